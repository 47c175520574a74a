#pragma once
// The dashboard's HTTP routes: the page itself, sign-in, the JSON API (sites, alerts with their
// history and snapshot, sensor roll-ups, the closed-loop actions) and the live event stream.
// Everything but the page, /healthz, /readyz and sign-in needs an operator.

#include <spdlog/logger.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "monitor/auth.hpp"
#include "monitor/broker_link.hpp"
#include "monitor/ingest.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/store.hpp"
#include "monitor/web_server.hpp"

namespace kg::monitor {

// An alert as the API and the event stream show it, with its deadlines and overdue flag at `now`.
nlohmann::json alert_json(const Alert& a, const std::array<Deadline, 3>& deadlines, TimePoint now);

// A site of Store::sites() as the API and the event stream show it: its state (online, offline,
// unknown, or silent: online but nothing heard within `heartbeat_timeout`) and heartbeat age at `now`,
// judged with the room's own link to the broker. While it is down every site is `unknown` (the room
// hears nothing: a site gone quiet and the room's deafness look alike) with its `last_state`; once it
// is up, a site's silence is counted from when the room could hear again, not across the room's
// outage. `state_note` says why a state is not what the site itself said (null otherwise).
void add_site_state(nlohmann::json& site, TimePoint now, Duration heartbeat_timeout,
                    const BrokerLinkState& link);

// The room's link as /api/me gives it: connected, since, the last error, and while the sites' states
// are still coming in after it came up, until when (`settling_until`).
nlohmann::json broker_link_json(const BrokerLinkState& link, TimePoint now, Duration heartbeat_timeout);

struct ApiContext {
    Store& store;
    Auth& auth;
    const MonitorConfig& cfg;
    std::function<bool()> mqtt_connected;
    // An operator recorded an action: publish the decision, tell the open dashboards.
    std::function<void(const ActionRecord&)> on_action;
    const Ingest::Counters* counters = nullptr;
    std::function<std::uint64_t()> replay_requests;     // replay requests the broker took
    std::function<std::uint64_t()> replay_given_up;     // numbers given up for want of an answer
    std::function<std::string()> notification_metrics;  // the notifier's lines, empty without one
    // Why the database does not take messages now (empty: it does); /readyz is 503 meanwhile.
    std::function<std::string()> store_failure;
    // The sites' clocks against the room's (Ingest::clock()); /metrics gives it when it is known.
    const ClockWatch* clock = nullptr;
    // The room's own link to the broker (MqttClient::link()), which the sites' states are judged
    // with; without one, connected for good.
    std::function<BrokerLinkState()> broker_link;
    // An operator retired a site: the open dashboards drop its row.
    std::function<void(const std::string& site)> on_site_removed;
};

WebHandler make_api(ApiContext ctx, std::shared_ptr<spdlog::logger> log);

// The single-page dashboard (HTML, CSS and JavaScript inline: nothing is fetched from elsewhere).
const std::string& dashboard_html();

}  // namespace kg::monitor
