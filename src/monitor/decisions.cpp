#include "monitor/decisions.hpp"

#include "common/backoff.hpp"

namespace kg::monitor {

using nlohmann::json;

std::string decision_topic(const std::string& prefix, const ActionRecord& action) {
    return prefix + "/" + action.site + "/decisions/" + action.event_id;
}

json decision_payload(const ActionRecord& action, const std::optional<Alert>& alert) {
    json out = {{"decision_id", action.monitor + "-" + std::to_string(action.seq)},
                {"event_id", action.event_id},
                {"site", action.site},
                {"action", action.action},
                {"status", action.status_after},
                {"operator", action.operator_name},
                {"note", action.note},
                {"time", action.time},
                {"monitor", action.monitor}};
    // What the decision is about, so the canteen's screen needs nothing else to show it.
    if (alert) {
        json about = {{"check", alert->check},
                      {"label", alert->label},
                      {"severity", alert->severity},
                      {"start_time", alert->start_time}};
        about[alert->source_kind] = alert->source;
        out["alert"] = std::move(about);
    }
    return out;
}

DecisionPublisher::DecisionPublisher(Store& store, MqttClient& mqtt, std::string prefix,
                                     std::shared_ptr<spdlog::logger> log)
    : store_(store), mqtt_(mqtt), prefix_(std::move(prefix)), log_(std::move(log)) {}

void DecisionPublisher::start() {
    worker_.start([this] { run(); });
}

bool DecisionPublisher::publish_pending() {
    for (;;) {
        const auto pending = store_.unpublished_actions(50);
        if (pending.empty()) return true;
        for (const auto& action : pending) {
            if (worker_.stopping()) return true;
            const auto topic = decision_topic(prefix_, action);
            const auto payload = decision_payload(action, store_.alert(action.event_id))
                                     .dump(-1, ' ', false, json::error_handler_t::replace);
            if (!mqtt_.publish_confirmed(topic, payload, 1, std::chrono::seconds(5))) return false;
            store_.mark_published(action.seq, Clock::now());
            log_->info("decision {} on {} ({} by {})", action.seq, topic, action.action,
                       action.operator_name);
        }
    }
}

void DecisionPublisher::run() {
    Backoff backoff(std::chrono::milliseconds(500), std::chrono::seconds(30));
    while (!worker_.stopping()) {
        bool ok = true;
        try {
            ok = publish_pending();
        } catch (const std::exception& e) {
            log_->error("publishing decisions: {}", e.what());
            ok = false;
        }
        if (ok) {
            backoff.reset();
            worker_.wait_for(std::chrono::seconds(5));  // a safety poll; wake() is the normal path
        } else {
            worker_.wait_for(backoff.next());
        }
    }
}

}  // namespace kg::monitor
