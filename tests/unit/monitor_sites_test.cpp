// kitchen-monitor's sites against the room's own link and their end: a room that lost the broker
// does not read its own outage as every canteen going silent (nor right after it is back), an
// empty retained message is a clear and not a broken message, and an operator can retire a site
// (decommissioned, renamed) that would otherwise stay in the room for good.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "common/logging.hpp"
#include "monitor/api.hpp"
#include "monitor/auth.hpp"
#include "monitor/broker_link.hpp"
#include "monitor/ingest.hpp"
#include "monitor/iso_time.hpp"
#include "monitor/store.hpp"

using namespace kg::monitor;
using nlohmann::json;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

const kg::Duration kTimeout = seconds(60);

BrokerLinkState link_up(kg::TimePoint since) { return {true, since, {}, std::nullopt}; }
BrokerLinkState link_down(kg::TimePoint since) { return {false, since, "connection lost", since}; }

json site_row(const std::string& availability, std::optional<kg::TimePoint> last_seen) {
    return {{"site", "sch-0101"},
            {"availability", availability},
            {"last_seen", last_seen ? json(kg::iso8601_utc(*last_seen)) : json(nullptr)}};
}

json judged(const std::string& availability, std::optional<kg::TimePoint> last_seen, kg::TimePoint now,
            const BrokerLinkState& link) {
    auto row = site_row(availability, last_seen);
    add_site_state(row, now, kTimeout, link);
    return row;
}

// An event message in the gateway's format (docs/mqtt.md), numbered when `seq` is given.
json event(const std::string& id, const std::string& site, std::optional<int> seq = std::nullopt) {
    json j = {{"message_id", id + ":start"},
              {"id", id},
              {"site", site},
              {"camera", "cooking"},
              {"check", "bin_lid"},
              {"label", "open"},
              {"severity", 2},
              {"state", "start"},
              {"start_time", "2026-11-24T06:31:10.000Z"},
              {"end_time", nullptr},
              {"time", "2026-11-24T06:31:15.000Z"},
              {"score", 0.9},
              {"top_score", 0.9}};
    if (seq) {
        j["stream"] = "5f0c2a9e8d7b6c5a";
        j["seq"] = *seq;
    }
    return j;
}

json gateway_message(const std::string& site, int seq) {
    return {{"site", site},
            {"name", "Canteen " + site},
            {"version", "0.1.0"},
            {"started_at", "2026-11-24T06:00:00.000Z"},
            {"cameras", {{{"id", "cooking"}}}},
            {"sensors", {{{"id", "fridge"}}}},
            {"config_warnings", json::array()},
            {"stream", "5f0c2a9e8d7b6c5a"},
            {"stream_started", "2026-11-02T03:14:07.512Z"},
            {"seq", seq},
            {"time", "2026-11-24T06:00:01.020Z"}};
}

json camera_state(const std::string& site) {
    return {{"site", site}, {"camera", "cooking"}, {"name", "Cooking"}, {"online", true}};
}

json sensor_state(const std::string& site) {
    return {{"site", site},   {"sensor", "fridge"}, {"name", "Fridge"},
            {"unit", "degC"}, {"online", true},     {"value", 3.5}};
}

// A log of its own, to read what ingest said.
struct Captured {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> log =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    std::string lines() {
        log->flush();
        return text.str();
    }
};

// The API as operator wang with a bearer token; the actions it reported.
struct Api {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    std::vector<ActionRecord> actions;
    std::vector<std::string> removed;  // sites the API said retired
    BrokerLink link;                   // the room's link to the broker, as the test sets it
    // Connected since `since`, or down since then.
    void set_link(bool connected, kg::TimePoint since) {
        link.connecting(since);
        if (connected) link.up(since);
    }
    WebHandler handler = make_api(ApiContext{store,
                                             auth,
                                             cfg,
                                             [] { return true; },
                                             [this](const ActionRecord& r) { actions.push_back(r); },
                                             nullptr,
                                             {},
                                             {},
                                             {},
                                             {},
                                             nullptr,
                                             [this] { return link.state(); },
                                             [this](const std::string& site) { removed.push_back(site); }},
                                  kg::Logging::null_logger());

    std::pair<int, json> call(http::verb method, const std::string& target, const std::string& body = "{}",
                              const char* type = "application/json") {
        Request req{method, target, 11};
        req.set(http::field::authorization, "Bearer tok-0123456789abcdef");
        if (method == http::verb::post) {
            req.set(http::field::content_type, type);
            req.body() = body;
            req.prepare_payload();
        }
        const auto reply = handler(req, {"127.0.0.1"});
        return {static_cast<int>(reply.response.result_int()),
                json::parse(reply.response.body(), nullptr, false)};
    }
    json sites() { return call(http::verb::get, "/api/sites").second; }
};

}  // namespace

// While the room is not connected nothing comes from any site: none is judged, and what it was when
// the room last heard is kept beside.
TEST(MonitorSiteState, NoSiteIsJudgedWhileTheRoomIsNotConnected) {
    const auto now = kg::Clock::now();
    const auto lost = now - minutes(5);
    for (const auto& [availability, seen, last] : {std::tuple{"online", lost - seconds(3), "online"},
                                                   std::tuple{"online", lost - minutes(3), "silent"},
                                                   std::tuple{"offline", lost - minutes(30), "offline"}}) {
        const auto row = judged(availability, seen, now, link_down(lost));
        EXPECT_EQ(row["state"], "unknown") << row.dump();
        EXPECT_EQ(row["last_state"], last) << row.dump();
        EXPECT_NE(row["state_note"].get<std::string>().find("the room is not connected to the broker since " +
                                                            kg::iso8601_utc(lost)),
                  std::string::npos)
            << row.dump();
        EXPECT_GT(row["heartbeat_age_s"].get<double>(), 300.0);  // its true age all the same
    }
}

// The room's outage is not the site's silence: after the room is back a site is silent only when it
// sent nothing within heartbeat_timeout of the room hearing again, whatever its last message's age.
TEST(MonitorSiteState, TheRoomsOutageDoesNotCountAgainstASitesHeartbeat) {
    const auto now = kg::Clock::now();
    const auto back = now - seconds(20);  // the room reconnected 20 s ago, after 10 minutes away
    const auto before = back - minutes(10) - seconds(5);
    auto row = judged("online", before, now, link_up(back));
    EXPECT_EQ(row["state"], "online") << row.dump();
    EXPECT_NE(row["state_note"].get<std::string>().find("silent if nothing comes by " +
                                                        kg::iso8601_utc(back + kTimeout)),
              std::string::npos)
        << row.dump();
    // Nothing came within heartbeat_timeout of the room hearing again: silent.
    row = judged("online", before, back + kTimeout + seconds(1), link_up(back));
    EXPECT_EQ(row["state"], "silent") << row.dump();
    // A site heard from since the room is back is judged by its own message, with no note.
    row = judged("online", back + seconds(5), now, link_up(back));
    EXPECT_EQ(row["state"], "online");
    EXPECT_TRUE(row["state_note"].is_null());
    // A room connected for long: the heartbeat as before.
    const auto long_ago = now - std::chrono::hours(5);
    EXPECT_EQ(judged("online", now - seconds(61), now, link_up(long_ago))["state"], "silent");
    EXPECT_EQ(judged("online", now - seconds(59), now, link_up(long_ago))["state"], "online");
    EXPECT_EQ(judged("offline", now - std::chrono::hours(2), now, link_up(long_ago))["state"], "offline");
    EXPECT_EQ(judged("online", std::nullopt, now, link_up(long_ago))["state"], "silent");
}

TEST(MonitorSiteState, TheLinkSaysSinceWhenAndItsLastError) {
    BrokerLink link;
    const auto t0 = kg::Clock::now() - minutes(10);
    link.connecting(t0);
    link.up(t0 + seconds(1));
    link.down(t0 + minutes(1), "connection lost");
    link.down(t0 + minutes(2), "cannot connect: Connection refused");
    auto s = link.state();
    EXPECT_FALSE(s.connected);
    EXPECT_EQ(s.since, t0 + minutes(1));  // deaf since the loss, however many attempts failed after it
    EXPECT_EQ(s.last_error, "cannot connect: Connection refused");
    auto j = broker_link_json(s, t0 + minutes(3), kTimeout);
    EXPECT_EQ(j["connected"], false);
    EXPECT_EQ(j["since"], kg::iso8601_utc(t0 + minutes(1)));
    EXPECT_EQ(j["last_error"], "cannot connect: Connection refused");
    EXPECT_TRUE(j["settling_until"].is_null());
    link.up(t0 + minutes(4));
    j = broker_link_json(link.state(), t0 + minutes(4) + seconds(10), kTimeout);
    EXPECT_EQ(j["connected"], true);
    EXPECT_EQ(j["settling_until"], kg::iso8601_utc(t0 + minutes(5)));
    EXPECT_TRUE(broker_link_json(link.state(), t0 + minutes(6), kTimeout)["settling_until"].is_null());
}

TEST(MonitorSiteState, ApiMeSaysTheRoomsLinkAndSitesAreNotSilentWhileItIsDown) {
    Api api;
    const auto lost = kg::Clock::now() - minutes(2);
    Ingest ingest(api.store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    ingest.handle("kitchen/sch-0101/availability", "online", false, lost - seconds(70));
    api.set_link(false, lost);
    api.link.down(lost, "connection lost");
    const auto [status, me] = api.call(http::verb::get, "/api/me");
    ASSERT_EQ(status, 200) << me.dump();
    EXPECT_EQ(me["broker"]["connected"], false) << me.dump();
    EXPECT_EQ(me["broker"]["since"], kg::iso8601_utc(lost));
    EXPECT_EQ(me["broker"]["last_error"], "connection lost");
    EXPECT_EQ(me["heartbeat_timeout_s"], 60.0);
    const auto sites = api.sites();
    ASSERT_EQ(sites.size(), 1u) << sites.dump();
    EXPECT_EQ(sites[0]["state"], "unknown");
    EXPECT_EQ(sites[0]["last_state"], "silent");  // 70 s before the loss
    api.set_link(true, kg::Clock::now() - seconds(1));
    EXPECT_EQ(api.sites()[0]["state"], "online");  // not heard since, within heartbeat_timeout
    EXPECT_EQ(api.call(http::verb::get, "/api/me").second["broker"]["connected"], true);
}

// An empty retained message is the broker's way to delete one: not a broken message, not the site's
// heartbeat, and it makes no site.
TEST(MonitorSiteIngest, AnEmptyRetainedAvailabilityOrGatewayIsAClear) {
    Store store(":memory:");
    Captured out;
    Ingest ingest(store, "kitchen", out.log, [](const Change&) {});
    const auto t0 = kg::Clock::now() - minutes(10);
    ingest.handle("kitchen/sch-9001/availability", "offline", true, t0);
    ingest.handle("kitchen/sch-9001/gateway", gateway_message("sch-9001", 0).dump(), true, t0);
    ingest.handle("kitchen/sch-9001/cameras/cooking/state", camera_state("sch-9001").dump(), false, t0);
    const auto seen = store.sites()[0]["last_seen"];
    ingest.handle("kitchen/sch-9001/availability", "", false, t0 + minutes(1));
    ingest.handle("kitchen/sch-9001/gateway", "", false, t0 + minutes(1));
    ingest.handle("kitchen/sch-9001/cameras/cooking/state", "", false, t0 + minutes(1));
    EXPECT_EQ(ingest.counters().refused.load(), 0u) << out.lines();
    const auto lines = out.lines();
    EXPECT_NE(lines.find("sch-9001: its retained availability message was cleared on the broker"),
              std::string::npos)
        << lines;
    EXPECT_NE(lines.find("sch-9001: its retained gateway message was cleared on the broker"),
              std::string::npos)
        << lines;
    EXPECT_EQ(lines.find("refused"), std::string::npos) << lines;
    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["availability"], "offline");  // what the room last heard stays
    EXPECT_EQ(sites[0]["last_seen"], seen);          // a clear is not the site speaking
    EXPECT_TRUE(sites[0]["cameras"].empty());
    // Clears of a site the room does not know make none.
    ingest.handle("kitchen/sch-9002/availability", "", false, t0);
    ingest.handle("kitchen/sch-9002/gateway", "", false, t0);
    ingest.handle("kitchen/sch-9002/sensors/fridge/state", "", false, t0);
    EXPECT_FALSE(store.has_site("sch-9002"));
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
}

// A site's retirement in the store: its open alerts closed in the operator's name (kept, with their
// decisions to publish), what the room watched of it forgotten (no replay asked of it again), its row
// gone, and the retirement on record.
TEST(MonitorSiteRetire, RetiringASiteClosesItsAlertsAndForgetsWhatTheRoomWatched) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto t0 = kg::Clock::now() - std::chrono::hours(1);
    for (const auto* site : {"sch-9001", "sch-0101"}) {
        const std::string p = std::string("kitchen/") + site;
        ingest.handle(p + "/availability", "online", true, t0);
        ingest.handle(p + "/gateway", gateway_message(site, 1).dump(), false, t0);
        ingest.handle(p + "/cameras/cooking/state", camera_state(site).dump(), false, t0);
        ingest.handle(p + "/sensors/fridge/state", sensor_state(site).dump(), false, t0);
        // Number 2 never comes: missing, asked for by replay.
        ingest.handle(p + "/events", event(std::string(site) + "-evt-open", site, 3).dump(), false, t0);
    }
    ingest.handle("kitchen/sch-9001/events", event("sch-9001-evt-ack", "sch-9001").dump(), false, t0);
    ingest.handle("kitchen/sch-9001/events", event("sch-9001-evt-done", "sch-9001").dump(), false, t0);
    ingest.handle("kitchen/sch-9001/events/sch-9001-evt-late/clip",
                  json{{"id", "sch-9001-evt-late"},
                       {"site", "sch-9001"},
                       {"camera", "cooking"},
                       {"start_time", "2026-11-24T06:31:10.000Z"},
                       {"error", "no clip"}}
                      .dump(),
                  false, t0);
    ingest.handle("kitchen/sch-9001/availability", "offline", false, t0 + seconds(1));
    ASSERT_EQ(store.act("sch-9001-evt-ack", Action::acknowledge, "li", "", t0).code, ActionResult::Code::ok);
    ASSERT_EQ(store.act("sch-9001-evt-done", Action::acknowledge, "li", "", t0).code, ActionResult::Code::ok);
    ASSERT_EQ(store.act("sch-9001-evt-done", Action::close, "li", "fixed", t0).code, ActionResult::Code::ok);
    for (const auto& a : store.unpublished_actions(100)) store.mark_published(a.seq, t0);
    const auto due = [&](const std::string& site) {
        for (const auto& d : store.due_replays(t0 + minutes(10), seconds(1), seconds(1)))
            if (d.site == site) return true;
        return false;
    };
    ASSERT_TRUE(due("sch-9001"));
    ASSERT_TRUE(store.stream_track("sch-9001"));

    const auto now = t0 + minutes(30);
    EXPECT_FALSE(store.retire_site("sch-9999", "wang", "", now));
    const auto done = store.retire_site("sch-9001", "wang", "canteen closed", now, "room-1");
    ASSERT_TRUE(done);
    EXPECT_EQ(done->retired_at, kg::iso8601_utc(now));
    EXPECT_EQ(done->cameras, 1);
    EXPECT_EQ(done->sensors, 1);
    ASSERT_EQ(done->closed.size(), 2u);  // the open one and the acknowledged one, not the closed one
    for (const auto& r : done->closed) {
        EXPECT_EQ(r.action, "close");
        EXPECT_EQ(r.status_after, "closed");
        EXPECT_EQ(r.operator_name, "wang");
        EXPECT_EQ(r.monitor, "room-1");
        EXPECT_EQ(r.note, "site sch-9001 retired by wang: canteen closed");
        const auto a = store.alert(r.event_id);
        ASSERT_TRUE(a);
        EXPECT_EQ(a->status, Status::closed);
        EXPECT_EQ(a->closed_by, "wang");
        EXPECT_EQ(a->close_note, r.note);
    }
    EXPECT_EQ(store.alert("sch-9001-evt-done")->close_note, "fixed");  // closed before: as it was
    // Their decisions wait to be published to the site, as any close's.
    EXPECT_EQ(store.unpublished_actions(100).size(), 2u);
    EXPECT_EQ(store.actions("sch-9001-evt-ack").back().note, "site sch-9001 retired by wang: canteen closed");

    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["site"], "sch-0101");  // the other site untouched
    EXPECT_EQ(sites[0]["cameras"].size(), 1u);
    EXPECT_FALSE(store.has_site("sch-9001"));
    EXPECT_FALSE(store.stream_track("sch-9001"));
    EXPECT_FALSE(due("sch-9001"));
    EXPECT_TRUE(due("sch-0101"));
    EXPECT_TRUE(store.retired("sch-9001"));
    EXPECT_FALSE(store.retired("sch-0101"));
    const auto record = store.retirements();
    ASSERT_EQ(record.size(), 1u);
    EXPECT_EQ(record[0]["site"], "sch-9001");
    EXPECT_EQ(record[0]["name"], "Canteen sch-9001");
    EXPECT_EQ(record[0]["operator"], "wang");
    EXPECT_EQ(record[0]["note"], "canteen closed");
    EXPECT_EQ(record[0]["alerts_closed"], 2);
}

// What the broker kept of a retired site (its retained messages, sent again at each subscription, its
// last will) does not bring it back; a message of its own does, as a new site.
TEST(MonitorSiteRetire, ARetiredSiteComesBackOnlyWithAMessageOfItsOwn) {
    Store store(":memory:");
    Captured out;
    Ingest ingest(store, "kitchen", out.log, [](const Change&) {});
    const auto t0 = kg::Clock::now() - std::chrono::hours(1);
    ingest.handle("kitchen/sch-9001/availability", "offline", true, t0);
    ingest.handle("kitchen/sch-9001/gateway", gateway_message("sch-9001", 1).dump(), true, t0);
    ASSERT_TRUE(store.retire_site("sch-9001", "wang", "", t0 + minutes(1)));
    // The room reconnects twice: the broker hands it the retained messages again each time.
    for (int i = 0; i < 2; ++i) {
        ingest.handle("kitchen/sch-9001/availability", "offline", true, t0 + minutes(2 + i));
        ingest.handle("kitchen/sch-9001/gateway", gateway_message("sch-9001", 1).dump(), true,
                      t0 + minutes(2 + i));
        ingest.handle("kitchen/sch-9001/cameras/cooking/state", camera_state("sch-9001").dump(), true,
                      t0 + minutes(2 + i));
        ingest.handle("kitchen/sch-9001/availability", "offline", false, t0 + minutes(2 + i));  // a late will
    }
    EXPECT_FALSE(store.has_site("sch-9001"));
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
    const auto lines = out.lines();
    const auto said = lines.find("sch-9001 was retired by an operator");
    EXPECT_NE(said, std::string::npos) << lines;
    EXPECT_EQ(lines.find("sch-9001 was retired by an operator", said + 1), std::string::npos)
        << lines;  // once
    // The gateway is started again under that id: its own messages make a new site.
    ingest.handle("kitchen/sch-9001/availability", "online", false, t0 + minutes(5));
    ingest.handle("kitchen/sch-9001/cameras/cooking/state", camera_state("sch-9001").dump(), false,
                  t0 + minutes(5));
    ASSERT_TRUE(store.has_site("sch-9001"));
    EXPECT_FALSE(store.retired("sch-9001"));
    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["availability"], "online");
    EXPECT_EQ(sites[0]["open_alerts"], 0);
    // From then on its retained messages count again.
    ingest.handle("kitchen/sch-9001/gateway", gateway_message("sch-9001", 1).dump(), true, t0 + minutes(6));
    EXPECT_EQ(store.sites()[0]["name"], "Canteen sch-9001");
    EXPECT_EQ(store.retirements().size(), 1u);  // the record stays
}

// POST /api/sites/<id>/retire: an operator action as acknowledge and close are (signed in, JSON only,
// the operator the signed-in one), refused with the reason while the site is online or the room
// cannot tell.
TEST(MonitorSiteRetire, TheApiRetiresOnlyAnOfflineOrSilentSite) {
    Api api;
    Ingest ingest(api.store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto now = kg::Clock::now();
    api.set_link(true, now - std::chrono::hours(1));
    ingest.handle("kitchen/sch-9001/availability", "online", false, now - seconds(5));
    ingest.handle("kitchen/sch-9001/events", event("sch-9001-evt-open", "sch-9001").dump(), false,
                  now - seconds(5));
    ingest.handle("kitchen/sch-9002/availability", "online", false, now - minutes(5));  // silent

    auto [status, body] = api.call(http::verb::post, "/api/sites/sch-9001/retire");
    EXPECT_EQ(status, 409) << body.dump();
    EXPECT_NE(body["error"].get<std::string>().find("sch-9001 is online"), std::string::npos) << body.dump();
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-9001/retire", "{}", "text/plain");
    EXPECT_EQ(status, 415);
    std::tie(status, body) = api.call(http::verb::get, "/api/sites/sch-9001/retire");
    EXPECT_EQ(status, 405);
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-0000/retire");
    EXPECT_EQ(status, 404);
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-9001/retire",
                                      json{{"note", std::string(1001, 'x')}}.dump());
    EXPECT_EQ(status, 413);
    {
        Request anonymous{http::verb::post, "/api/sites/sch-9001/retire", 11};
        anonymous.set(http::field::content_type, "application/json");
        EXPECT_EQ(api.handler(anonymous, {"127.0.0.1"}).response.result_int(), 401u);
    }
    // The room cannot hear: whether a site is online is not known.
    api.set_link(false, now - seconds(30));
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-9002/retire");
    EXPECT_EQ(status, 409);
    EXPECT_NE(body["error"].get<std::string>().find("the room is not connected to the broker"),
              std::string::npos)
        << body.dump();

    api.set_link(true, now - std::chrono::hours(1));
    std::tie(status, body) =
        api.call(http::verb::post, "/api/sites/sch-9002/retire", json{{"note", "renamed sch-9003"}}.dump());
    ASSERT_EQ(status, 200) << body.dump();
    EXPECT_EQ(body["operator"], "wang");
    EXPECT_TRUE(body["alerts_closed"].empty());
    // Said to the open dashboards even without an alert closed (nothing else would mark the site).
    EXPECT_EQ(api.removed, std::vector<std::string>{"sch-9002"});
    // Offline, but heard since: a stale last will (a broker cluster's late one) says so of a site
    // that still sends; retired, its alert would be closed in the operator's name and the site back
    // at its next message (the review of this change).
    ingest.handle("kitchen/sch-9001/availability", "offline", false, now - seconds(4));
    ingest.handle("kitchen/sch-9001/cameras/cooking/state",
                  json{{"camera", "cooking"}, {"online", true}, {"time", kg::iso8601_utc(now)}}.dump(), false,
                  now);
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-9001/retire");
    EXPECT_EQ(status, 409);
    EXPECT_NE(body["error"].get<std::string>().find("sch-9001 says offline but was heard since"),
              std::string::npos)
        << body.dump();
    // A gateway that stopped minutes ago: offline, retired with its open alert closed and announced.
    ingest.handle("kitchen/sch-9004/availability", "online", false, now - minutes(4));
    ingest.handle("kitchen/sch-9004/events", event("sch-9004-evt-open", "sch-9004").dump(), false,
                  now - minutes(4));
    ingest.handle("kitchen/sch-9004/availability", "offline", false, now - minutes(3));
    std::tie(status, body) = api.call(http::verb::post, "/api/sites/sch-9004/retire");
    ASSERT_EQ(status, 200) << body.dump();
    EXPECT_EQ(body["alerts_closed"], json::array({"sch-9004-evt-open"}));
    ASSERT_EQ(api.actions.size(), 1u);
    EXPECT_EQ(api.actions[0].event_id, "sch-9004-evt-open");
    EXPECT_EQ(api.removed, (std::vector<std::string>{"sch-9002", "sch-9004"}));
    const auto alert = api.call(http::verb::get, "/api/alerts/sch-9004-evt-open").second;
    EXPECT_EQ(alert["status"], "closed");
    EXPECT_EQ(alert["closed_by"], "wang");
    EXPECT_EQ(alert["close_note"], "site sch-9004 retired by wang");
    EXPECT_EQ(alert["actions"][0]["operator"], "wang");
    for (const auto& row : api.sites()) EXPECT_NE(row["site"], "sch-9004");
    const auto retired = api.call(http::verb::get, "/api/retired-sites").second;
    ASSERT_EQ(retired.size(), 2u) << retired.dump();
    EXPECT_EQ(retired[0]["site"], "sch-9004");  // newest first
    EXPECT_EQ(retired[1]["note"], "renamed sch-9003");
    // Gone: nothing more to retire.
    EXPECT_EQ(api.call(http::verb::post, "/api/sites/sch-9004/retire").first, 404);
}
