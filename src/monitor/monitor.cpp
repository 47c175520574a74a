#include "monitor/monitor.hpp"

#include <algorithm>

namespace kg::monitor {

using nlohmann::json;

Monitor::Monitor(const MonitorConfig& cfg, const Logging& logging, boost::asio::io_context& io)
    : cfg_(cfg),
      log_(logging.get("monitor")),
      store_(cfg.db_path, cfg.retention),
      auth_(cfg.http.operators, cfg.http.session_ttl),
      hub_(std::make_shared<EventHub>()),
      site_updates_(
          kSiteUpdatePeriod,
          [this](const std::string& site) -> std::optional<json> {
              // Nobody to send it to: a dashboard opened later reads /api/sites first, and the row
              // costs the store's lock that ingest waits on.
              if (hub_->streams() == 0) return std::nullopt;
              auto row = store_.site(site);
              // Gone from the room (an operator retired it): the open dashboards drop its row now,
              // not at their next reading of the whole list.
              if (!row) return json{{"site", site}, {"removed", true}};
              add_site_state(*row, Clock::now(), cfg_.heartbeat_timeout, mqtt_->link());
              return row;
          },
          [this](const json& rows) {
              hub_->broadcast("sites",
                              json{{"rows", rows}}.dump(-1, ' ', false, json::error_handler_t::replace));
          },
          logging.get("monitor")) {
    // A site shown silent at most 1/12 of heartbeat_timeout late, its heartbeat written at most that
    // often (at least 100 ms, at most 5 s: 5 s at the default 60 s).
    store_.set_seen_resolution(std::clamp<Duration>(cfg_.heartbeat_timeout / 12,
                                                    std::chrono::milliseconds(100), std::chrono::seconds(5)));
    // Before ingest exists: from its first message, storing an alert queues its notifications.
    if (!cfg_.notify.targets.empty())
        notifier_ = std::make_unique<Notifier>(store_, cfg_, logging.get("notify"));
    ingest_ = std::make_unique<Ingest>(
        store_, cfg_.mqtt.topic_prefix, logging.get("ingest"), [this](const Change& c) { notify(c); },
        cfg_.track_sequences());
    mqtt_ = std::make_unique<MqttClient>(
        cfg_.mqtt,
        [this](const std::string& topic, const std::string& payload, bool retained) {
            ingest_->handle(topic, payload, retained, Clock::now());
        },
        logging.get("mqtt"));
    if (cfg_.track_sequences()) {
        mqtt_->set_on_subscribed([this] {
            // Once: from then on a new site's stream that began later is followed from its first
            // number (docs/mqtt.md, "What the monitor does").
            if (watching_said_) return;
            watching_said_ = true;
            if (const auto since = store_.note_watching(Clock::now()))
                log_->info(
                    "following sites since {}: a new site's stream begun later is followed from its "
                    "first number",
                    iso8601_utc(*since));
            else
                log_->warn(
                    "the database cannot keep when the room began following sites (may it be written?): "
                    "a new site's stream is followed from the number first heard of it");
        });
    }
    decisions_ =
        std::make_unique<DecisionPublisher>(store_, *mqtt_, cfg_.mqtt.topic_prefix, logging.get("decisions"));
    if (cfg_.replay.enabled) {
        replay_ = std::make_unique<ReplayRequester>(
            store_,
            [this](const std::string& topic, const std::string& payload) {
                return mqtt_->publish_confirmed(topic, payload, 1, std::chrono::seconds(5));
            },
            cfg_.mqtt.topic_prefix, cfg_.mqtt.client_id, cfg_.replay, logging.get("replay"),
            [this](const std::string& site) {
                notify({Change::Kind::site, site, {}});
            });
    }
    ApiContext ctx{store_,
                   auth_,
                   cfg_,
                   [this] { return mqtt_->connected(); },
                   [this](const ActionRecord& r) {
                       decisions_->wake();
                       notify({Change::Kind::alert, r.site, r.event_id});
                   },
                   &ingest_->counters(),
                   [this] { return replay_ ? replay_->requests() : 0; },
                   [this] { return replay_ ? replay_->given_up() : 0; },
                   [this] { return notifier_ ? notifier_->metrics_text() : std::string(); },
                   [this] { return ingest_->store_failure(); },
                   &ingest_->clock(),
                   [this] { return mqtt_->link(); },
                   [this](const std::string& site) {
                       notify({Change::Kind::site, site, {}});
                   }};
    auto http_log = logging.get("http");
    WebLimits limits;
    limits.http.trusted_proxies = web::TrustedProxies::parse(cfg_.http.trusted_proxies);
    web_ = std::make_unique<WebServer>(io, cfg_.http.listen, limits, make_api(std::move(ctx), http_log), hub_,
                                       http_log);
}

Monitor::~Monitor() { stop(); }

void Monitor::start() {
    web_->start();
    log_->info("dashboard on {} (port {})", cfg_.http.listen, web_->port());
    site_updates_.start();
    decisions_->start();
    {
        // With or without a notify section: a target taken out of it takes its queue along.
        std::vector<std::string> names;
        for (const auto& t : cfg_.notify.targets) names.push_back(t.name);
        if (const auto n = store_.forget_notifications_except(names); n > 0)
            log_->warn("{} queued notification(s) dropped: their target is no longer in notify.targets", n);
    }
    if (notifier_) {
        notifier_->start();
        log_->info("notifications to {} target(s)", cfg_.notify.targets.size());
    }
    mqtt_->start();
    if (replay_) {
        replay_->start();
        log_->info(
            "replay requests on: a number missing {} s is asked for, again every {} s, given up after {} s",
            cfg_.replay.after.count() / 1000.0, cfg_.replay.every.count() / 1000.0,
            cfg_.replay.give_up.count() / 1000.0);
    } else {
        log_->info("replay requests off{}",
                   cfg_.track_sequences() ? "" : "; sequence numbers not followed (share group)");
    }
    retention_.start([this] {
        do {
            prune_until_done();
        } while (retention_.wait_for(std::chrono::hours(1)));
    });
}

void Monitor::prune_until_done() {
    Pruned total;
    try {
        for (;;) {
            // Counted back from the sites' clocks when most agree the room's runs ahead: a room
            // clock set a year on would otherwise delete every record as past its time.
            const auto batch_start = std::chrono::steady_clock::now();
            const auto p = store_.prune(ingest_->clock().earlier_of(Clock::now()));
            total.alerts += p.alerts;
            total.snapshots += p.snapshots;
            total.rollups += p.rollups;
            total.pending_clips += p.pending_clips;
            if (!p.more) break;
            // As long again for everyone else: the store's lock is not fair, and batches back to
            // back held ingest and the dashboard for the whole pass (300 000 alerts due after an
            // upgrade or a shorter retention: 12 s without an alert stored, the months review).
            const auto took = std::chrono::steady_clock::now() - batch_start;
            if (!retention_.wait_for(
                    std::max<std::chrono::steady_clock::duration>(took, std::chrono::milliseconds(20))))
                break;
        }
        store_.optimize();  // the tables' statistics after what ingest and retention changed
    } catch (const std::exception& e) {
        // Tried again within the hour; nothing is lost by waiting.
        log_->warn("retention: could not delete old records: {}", e.what());
    }
    if (total.total() > 0) {
        log_->info(
            "retention: deleted past their time: closed alerts {} (with their history and pictures), other "
            "snapshots {}, sensor roll-ups {}, clip reports whose alert never came {}",
            total.alerts, total.snapshots, total.rollups, total.pending_clips);
    }
}

void Monitor::stop() {
    if (stopped_) return;
    stopped_ = true;
    retention_.stop();
    // First: a message waiting for the database gives up, so the MQTT client can stop. Paho holds
    // its process-wide mutex while that message's handler waits, and a replay request being
    // published would wait for the mutex, and replay_->stop() for it.
    ingest_->stop();
    if (replay_) replay_->stop();
    mqtt_->stop();
    if (notifier_) notifier_->stop();
    decisions_->stop();
    site_updates_.stop();
    web_->stop();
}

void Monitor::notify(const Change& change) {
    // Runs on the MQTT thread (ingest) or the HTTP thread (actions); the hub only posts frames.
    try {
        switch (change.kind) {
            case Change::Kind::alert: {
                if (notifier_) notifier_->wake();
                site_updates_.mark(change.site);  // its open counts
                const auto a = store_.alert(change.event_id);
                if (!a) return;  // a snapshot or clip report ahead of its event
                hub_->broadcast("alert", alert_json(*a, cfg_.deadlines, Clock::now())
                                             .dump(-1, ' ', false, json::error_handler_t::replace));
                return;
            }
            case Change::Kind::site:
                site_updates_.mark(change.site);
                return;
            case Change::Kind::rollup:
                hub_->broadcast("rollup", json{{"site", change.site}}.dump());
                return;
        }
    } catch (const std::exception& e) {
        log_->warn("live update for {} not sent: {}", change.site, e.what());
    }
}

}  // namespace kg::monitor
