#include "monitor/replay.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace kg::monitor {

using nlohmann::json;

namespace {

// A pass asks at most this many; the rest stay due for the next pass, a moment later.
constexpr int kMaxRequestsPerPass = 100;

}  // namespace

std::string replay_topic(const std::string& prefix, const std::string& site) {
    return prefix + "/" + site + "/replay";
}

json replay_request(const std::string& request_id, const std::string& site, const std::string& stream,
                    const ReplayRange& range, const std::string& monitor, TimePoint now) {
    return {{"request_id", request_id}, {"site", site},       {"stream", stream},        {"from", range.from},
            {"to", range.to},           {"monitor", monitor}, {"time", iso8601_utc(now)}};
}

ReplayRequester::ReplayRequester(Store& store, Publish publish, std::string prefix, std::string client_id,
                                 ReplaySettings cfg, std::shared_ptr<spdlog::logger> log, Changed changed)
    : store_(store),
      publish_(std::move(publish)),
      prefix_(std::move(prefix)),
      client_id_(std::move(client_id)),
      cfg_(cfg),
      log_(std::move(log)),
      changed_(std::move(changed)),
      id_prefix_(fmt::format(
          "{}-{}-", client_id_,
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count())) {}

void ReplayRequester::start() {
    worker_.start([this] { run(); });
}

int ReplayRequester::ask_due(TimePoint now) {
    for (const auto& gone : store_.give_up_missed_before(now - cfg_.give_up)) {
        for (const auto& r : gone.ranges) {
            given_up_ += static_cast<std::uint64_t>(r.count);
            log_->warn(
                "{} stream {}: {}-{} ({} numbers) missing for {} h with no answer: no longer asked for, "
                "counted as lost (the gateway offline for good, not allowed to read its replay topic, or a "
                "message the room refuses before reading its number)",
                gone.site, gone.stream, r.from, r.to, r.count,
                std::chrono::duration<double, std::ratio<3600>>(cfg_.give_up).count());
        }
        if (changed_) changed_(gone.site);
    }
    int sent = 0;
    for (const auto& due : store_.due_replays(now, cfg_.after, cfg_.every)) {
        for (const auto& range : plan_requests(due.ranges)) {
            if (sent >= kMaxRequestsPerPass) return sent;
            const std::string id = id_prefix_ + std::to_string(next_id_++);
            const auto payload = replay_request(id, due.site, due.stream, range, client_id_, now).dump();
            // Not marked asked unless the broker took it: then it is asked again at the next pass.
            if (!publish_(replay_topic(prefix_, due.site), payload)) {
                log_->debug("replay request {} for {} not taken by the broker; next pass", id, due.site);
                return sent;
            }
            store_.mark_asked(due.site, due.stream, range.from, range.to, now);
            ++sent;
            ++requests_;
            log_->info("asked {} (stream {}) for {}-{} (request {})", due.site, due.stream, range.from,
                       range.to, id);
        }
    }
    return sent;
}

void ReplayRequester::run() {
    // Often enough that a number is asked for close to `after`, without polling the store busily.
    const auto tick = std::clamp<Duration>(std::min(cfg_.after, cfg_.every) / 4,
                                           std::chrono::milliseconds(250), std::chrono::seconds(10));
    while (worker_.wait_for(tick)) {
        try {
            ask_due(Clock::now());
        } catch (const std::exception& e) {
            log_->warn("replay requests: {}", e.what());
        }
    }
}

}  // namespace kg::monitor
