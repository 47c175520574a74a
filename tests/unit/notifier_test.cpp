// The monitor's notifications: the `notify` section, which targets take which alert, the bodies
// WeCom, DingTalk and a JSON endpoint get, the store's queue (once per alert and kind, leased,
// kept across restarts) and the notifier posting to a real HTTP server on a local port.
#include "monitor/notifier.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "common/logging.hpp"
#include "monitor/ingest.hpp"
#include "monitor/iso_time.hpp"

using namespace kg::monitor;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

const std::string kE1 = "19ab3c0f2e1-00000001", kE2 = "19ab3c0f2e1-00000002";
const kg::TimePoint kT0 = *parse_iso8601_utc("2026-12-01T06:00:00.000Z");

const std::string kBase = R"(mqtt: {url: "tcp://127.0.0.1:1883", client_id: monitor-1}
db: {path: monitor.db}
http:
  operators: [{name: wang, password: correct-horse}]
)";

MonitorConfig config(const std::string& notify) {
    return load_monitor_config_string(kBase + notify, "/etc/kitchen-monitor/monitor.yaml");
}

std::string config_error(const std::string& notify) {
    try {
        config(notify);
    } catch (const kg::config::ConfigInvalid& e) {
        return e.errors.front().to_string();
    }
    return "";
}

EventMessage message(const std::string& id, const std::string& state, int severity = 1,
                     const std::string& check = "mask", const std::string& site = "sch-0101",
                     const std::string& label = "no_mask", std::optional<int> windows_missed = std::nullopt) {
    json j = {
        // An update's number: a missed disinfection's count is one a window.
        {"message_id",
         id + ":" + (state == "update" ? "update-" + std::to_string(windows_missed.value_or(1)) : state)},
        {"id", id},
        {"site", site},
        {"camera", "cooking"},
        {"check", check},
        {"label", label},
        {"severity", severity},
        {"state", state},
        {"start_time", "2026-12-01T05:59:50.000Z"},
        {"end_time", state == "end" ? json("2026-12-01T06:02:00.000Z") : json(nullptr)},
        {"time", "2026-12-01T05:59:55.000Z"},
        {"score", 0.8},
        {"top_score", 0.9},
        {"boxes", json::array()},
        {"zone", nullptr},
        {"evidence",
         {{"snapshot", nullptr}, {"snapshot_end", nullptr}, {"clip", nullptr}, {"errors", json::array()}}}};
    if (state == "end") {
        j["duration_s"] = 130.0;
        j["end_reason"] = "cleared";
    }
    if (windows_missed) j["windows_missed"] = *windows_missed;
    std::string error;
    auto m = parse_event(site, j.dump(), error);
    EXPECT_TRUE(m) << error;
    return *m;
}

// A real HTTP server on a local port: answers each POST with the next of `answers` (the last one
// repeats) and keeps what it was sent.
class WebhookServer {
public:
    struct Answer {
        int status = 200;
        std::string body = "{}";
    };
    explicit WebhookServer(std::vector<Answer> answers)
        : answers_(std::move(answers)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
        thread_ = std::thread([this] { serve(); });
    }
    ~WebhookServer() {
        stopping_ = true;
        // Wakes accept() with a connection of its own.
        try {
            asio::ip::tcp::socket s(io_);
            s.connect(acceptor_.local_endpoint());
        } catch (...) {
        }
        thread_.join();
    }
    std::string url(const std::string& path = "/hook") const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
    }
    // Waits up to `timeout` for `n` requests; returns them.
    std::vector<http::request<http::string_body>> wait_for(std::size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
        return requests_;
    }

private:
    void serve() {
        while (!stopping_) {
            asio::ip::tcp::socket socket(io_);
            acceptor_.accept(socket);
            if (stopping_) return;
            beast::flat_buffer buffer;
            http::request<http::string_body> req;
            beast::error_code ec;
            http::read(socket, buffer, req, ec);
            if (ec) continue;
            Answer a;
            {
                std::lock_guard lock(mutex_);
                a = answers_[std::min(requests_.size(), answers_.size() - 1)];
                requests_.push_back(req);
            }
            cv_.notify_all();
            http::response<http::string_body> res{static_cast<http::status>(a.status), 11};
            res.set(http::field::content_type, "application/json");
            res.body() = a.body;
            res.prepare_payload();
            http::write(socket, res, ec);
        }
    }

    std::vector<Answer> answers_;
    asio::io_context io_;
    asio::ip::tcp::acceptor acceptor_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<http::request<http::string_body>> requests_;
    std::thread thread_;
};

}  // namespace

TEST(NotifyConfig, ReadsTargetsWithTheirFilters) {
    const auto cfg = config(R"(notify:
  dashboard_url: https://room.example.cn/
  targets:
    - name: duty-wecom
      url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc
      format: wecom
      severities: [1, 2]
      checks: [mask, sensor]
      labels: [no_mask, leak]
      on: [open, end]
    - {name: hook, url: "http://[::1]:8080/alerts"}
)");
    ASSERT_EQ(cfg.notify.targets.size(), 2u);
    const auto& w = cfg.notify.targets[0];
    EXPECT_EQ(w.format, NotifyTarget::Format::wecom);
    EXPECT_EQ(w.severities, (std::vector<int>{1, 2}));
    EXPECT_EQ(w.checks, (std::vector<std::string>{"mask", "sensor"}));
    EXPECT_EQ(w.labels, (std::vector<std::string>{"no_mask", "leak"}));
    EXPECT_TRUE(w.on_open && w.on_end);
    const auto& h = cfg.notify.targets[1];
    EXPECT_EQ(h.format, NotifyTarget::Format::json);
    EXPECT_EQ(h.severities, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(h.on_open);
    EXPECT_FALSE(h.on_again) << "a JSON endpoint's program knows open and end: `again` when it asks";
    EXPECT_FALSE(h.on_end);
    EXPECT_FALSE(w.on_again) << "`on` lists what it takes";
    EXPECT_EQ(h.timeout, std::chrono::seconds(10));
    EXPECT_EQ(h.give_up, std::chrono::hours(24));
    EXPECT_EQ(cfg.notify.dashboard_url, "https://room.example.cn/");
}

TEST(NotifyConfig, NamesWhatIsWrongAndWhere) {
    const std::string at = "/etc/kitchen-monitor/monitor.yaml:";
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'ftp://x/y'}]}\n"),
              at + "5:35: notify.targets[0].url: not an http:// or https:// URL (http://host[:port]/path)");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', format: slack}]}\n"),
              at + "5:56: notify.targets[0].format: expected json, wecom or dingtalk, not 'slack'");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', format: wecom, secret: s}]}\n"),
              at + "5:71: notify.targets[0].secret: only a dingtalk robot signs with a secret");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', severities: [1, 4]}]}\n"),
              at + "5:64: notify.targets[0].severities[1]: expected 1, 2 or 3, not '4'");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', on: [start]}]}\n"),
              at + "5:53: notify.targets[0].on[0]: expected open, again or end, not 'start'");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/'}, {name: a, url: 'http://y/'}]}\n"),
              at + "5:56: notify.targets[1].name: target 'a' is listed twice");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', give_up: 30s}]}\n"),
              at + "5:57: notify.targets[0].give_up: shorter than a minute: a target down briefly would lose "
                   "alerts");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x:0/'}]}\n"),
              at + "5:35: notify.targets[0].url: not an http:// or https:// URL (http://host[:port]/path)");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', timeout: 5m}]}\n"),
              at + "5:57: notify.targets[0].timeout: expected 1s to 60s");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'https://x/', ca_file: /etc/hostname}]}\n"),
              at + "5:58: notify.targets[0].ca_file: /etc/hostname cannot be read as PEM certificates: "
                   "load_verify_file: no certificate or crl found");
    EXPECT_EQ(config_error("notify: {targets: []}\n"),
              at + "5:19: notify.targets: required: a list of targets, each with a name and a url");
    EXPECT_EQ(config_error("notify: {targets: [{url: 'http://x/'}]}\n"),
              at + "5:20: notify.targets[0].name: required: a name for logs and metrics");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', severities: ['']}]}\n"),
              at + "5:61: notify.targets[0].severities[0]: expected 1, 2 or 3, not ''");
    EXPECT_EQ(config_error("notify: {targets: [{name: a, url: 'http://x/', labels: leak}]}\n"),
              at + "5:56: notify.targets[0].labels: expected a list of labels (leave it out for all)");
}

// A gas detector's alerts have the check `sensor`: a filter on `gas` would never notify anyone, and
// nothing would say so. It is said (a user model may name a check so: a warning, not an error).
TEST(NotifyConfig, WarnsOfASensorKindGivenAsACheck) {
    const auto cfg = config("notify: {targets: [{name: a, url: 'http://x/', checks: [mask, gas]}]}\n");
    ASSERT_EQ(cfg.warnings.size(), 1u);
    EXPECT_EQ(
        cfg.warnings[0].to_string(),
        "/etc/kitchen-monitor/monitor.yaml:5:63: notify.targets[0].checks[1]: 'gas' is a kind of sensor, "
        "and no built-in check: a sensor's alerts have the check sensor (its thresholds, picked by their "
        "label with labels: [...]), sensor_health or disinfection; only a model's check named 'gas' would "
        "match");
    EXPECT_EQ(cfg.notify.targets.at(0).checks, (std::vector<std::string>{"mask", "gas"}));
    EXPECT_TRUE(config("notify: {targets: [{name: a, url: 'http://x/', checks: [sensor], labels: [leak]}]}\n")
                    .warnings.empty());
}

TEST(Notify, TargetsTakeTheAlertsTheirFiltersName) {
    const auto cfg = config(R"(notify:
  targets:
    - {name: urgent, url: "http://x/", severities: [1]}
    - {name: gas-ends, url: "http://x/", checks: [sensor], labels: [leak], on: [end]}
    - {name: one-site, url: "http://x/", sites: [sch-0202]}
)");
    using V = std::vector<std::string>;
    EXPECT_EQ(notify_targets_for(cfg.notify, message(kE1, "start", 1), kNotifyOpen), V{"urgent"});
    EXPECT_EQ(notify_targets_for(cfg.notify, message(kE1, "start", 2), kNotifyOpen), V{});
    EXPECT_EQ(
        notify_targets_for(cfg.notify, message(kE1, "end", 2, "sensor", "sch-0101", "leak"), kNotifyEnd),
        V{"gas-ends"});
    // The fridge's too_warm is a sensor alert too, but not the label that target takes.
    EXPECT_EQ(
        notify_targets_for(cfg.notify, message(kE1, "end", 2, "sensor", "sch-0101", "too_warm"), kNotifyEnd),
        V{});
    EXPECT_EQ(
        notify_targets_for(cfg.notify, message(kE1, "start", 3, "sensor", "sch-0202", "leak"), kNotifyOpen),
        V{"one-site"});
}

TEST(Notify, RendersWhatEachKindOfTargetReads) {
    Store store(":memory:");
    store.add_event(message(kE1, "start", 1), kT0);
    const auto alert = *store.alert(kE1);
    const auto cfg = config(R"(notify:
  targets:
    - {name: w, url: "http://x/", format: wecom}
    - {name: d, url: "http://x/", format: dingtalk}
    - {name: j, url: "http://x/"}
)");
    const json aj = {{"id", kE1}};
    const auto wecom =
        json::parse(render_notification(cfg.notify.targets[0], "https://room/", alert, "open", aj).body);
    EXPECT_EQ(wecom["msgtype"], "markdown");
    const std::string content = wecom["markdown"]["content"];
    EXPECT_NE(content.find("**Alert, severity 1 (urgent): mask / no_mask**"), std::string::npos) << content;
    EXPECT_NE(content.find("> Site: sch-0101"), std::string::npos) << content;
    EXPECT_NE(content.find("> Where: camera cooking"), std::string::npos) << content;
    EXPECT_NE(content.find("[Open in the dashboard](https://room/#alert=19ab3c0f2e1-00000001)"),
              std::string::npos)
        << content;

    const auto ding = json::parse(render_notification(cfg.notify.targets[1], "", alert, "open", aj).body);
    EXPECT_EQ(ding["markdown"]["title"], "Alert: mask / no_mask at sch-0101");
    EXPECT_EQ(std::string(ding["markdown"]["text"]).find("Open in the dashboard"), std::string::npos);

    const auto plain = render_notification(cfg.notify.targets[2], "https://room/", alert, "open", aj);
    EXPECT_EQ(plain.content_type, "application/json");
    EXPECT_EQ(json::parse(plain.body), (json{{"key", kE1 + ":open"},
                                             {"kind", "open"},
                                             {"alert", aj},
                                             {"link", "https://room/#alert=19ab3c0f2e1-00000001"}}));
}

// An outage's cause goes into the message: whom to send is the duty officer's first question.
TEST(Notify, AnAlertsCauseIsInItsMessage) {
    Store store(":memory:");
    store.add_event(message(kE1, "start", 2), kT0);
    auto alert = *store.alert(kE1);
    alert.cause = R"({"kind":"unauthorized","text":"cannot open: 401 Unauthorized"})";
    const auto cfg = config(R"(notify:
  targets:
    - {name: w, url: "http://x/", format: wecom}
)");
    const auto wecom =
        json::parse(render_notification(cfg.notify.targets[0], "", alert, "open", json::object()).body);
    const std::string content = wecom["markdown"]["content"];
    EXPECT_NE(content.find("> Cause: unauthorized (cannot open: 401 Unauthorized)"), std::string::npos)
        << content;
    EXPECT_EQ(content.find("Windows missed"), std::string::npos) << content;
    alert.windows_missed = 2;
    const auto missed =
        json::parse(render_notification(cfg.notify.targets[0], "", alert, "open", json::object()).body);
    EXPECT_NE(missed["markdown"]["content"].get<std::string>().find("> Windows missed: 2\n"),
              std::string::npos);
}

TEST(Notify, SignsADingTalkRobotsUrlAsItsDocumentationSays) {
    // The reference: Python's hmac/base64/quote_plus, as in DingTalk's own example.
    EXPECT_EQ(dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t",
                                  "SECabc123+/=", 1764626400000),
              "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1764626400000"
              "&sign=BJVbmujQiuszZR1SXKfggXC0sJJwmyNKLasVxk68qn8%3D");
}

TEST(Notify, TellsATargetsFailureFromARefusalOfOneMessage) {
    using F = NotifyTarget::Format;
    using V = NotifyVerdict;
    std::string why;
    EXPECT_EQ(notification_verdict(F::json, {204, "", ""}, why), V::taken);
    EXPECT_EQ(notification_verdict(F::json, {503, "busy", ""}, why), V::target_failed);
    EXPECT_EQ(why, "HTTP 503: busy");
    EXPECT_EQ(notification_verdict(F::json, {0, "", "connect: Connection refused"}, why), V::target_failed);
    EXPECT_EQ(why, "connect: Connection refused");
    // The endpoint itself is wrong (moved, not authorised, throttling): every message would fail.
    for (int status : {401, 403, 404, 408, 429})
        EXPECT_EQ(notification_verdict(F::json, {status, "", ""}, why), V::target_failed) << status;
    // This one body is refused: the next may go.
    for (int status : {400, 413, 415, 422})
        EXPECT_EQ(notification_verdict(F::json, {status, "", ""}, why), V::message_refused) << status;
    EXPECT_EQ(notification_verdict(F::wecom, {200, R"({"errcode":0,"errmsg":"ok"})", ""}, why), V::taken);
    EXPECT_EQ(
        notification_verdict(F::wecom, {200, R"({"errcode":93000,"errmsg":"invalid webhook url"})", ""}, why),
        V::target_failed);
    EXPECT_EQ(why, "errcode 93000: invalid webhook url");
    EXPECT_EQ(notification_verdict(F::dingtalk, {200, "<html>", ""}, why), V::target_failed);
    EXPECT_EQ(notification_verdict(F::dingtalk, {400, "", ""}, why), V::target_failed);
}

TEST(Notify, ReadsWebhookUrls) {
    const auto u = parse_web_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k");
    ASSERT_TRUE(u);
    EXPECT_TRUE(u->tls);
    EXPECT_EQ(u->host, "qyapi.weixin.qq.com");
    EXPECT_EQ(u->port, "443");
    EXPECT_EQ(u->target, "/cgi-bin/webhook/send?key=k");
    const auto v6 = parse_web_url("http://[::1]:8080");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->port, "8080");
    EXPECT_EQ(v6->target, "/");
    EXPECT_FALSE(parse_web_url("http://host:70000/"));
    EXPECT_FALSE(parse_web_url("mqtt://host/"));
}

TEST(NotifyQueue, QueuesOncePerAlertAndKindHoweverOftenItsMessagesCome) {
    Store store(":memory:");
    store.set_notify_routes([](const EventMessage&, const std::string& kind) {
        return kind == kNotifyOpen ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{"a"};
    });
    const auto start = message(kE1, "start");
    store.add_event(start, kT0);
    store.add_event(start, kT0 + std::chrono::seconds(1));  // a duplicate
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"a", 1}, {"b", 1}}));
    store.add_event(message(kE1, "end"), kT0 + std::chrono::seconds(2));
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"a", 2}, {"b", 1}}));
    const auto lease = std::chrono::seconds(40);
    // Oldest first, each taken once: a second instance on the database finds it leased.
    const auto open = store.take_notification("a", kT0 + std::chrono::seconds(3), lease);
    ASSERT_TRUE(open);
    EXPECT_EQ(open->kind, "open");
    EXPECT_EQ(open->queued_at, kT0);
    const auto end = store.take_notification("a", kT0 + std::chrono::seconds(3), lease);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->kind, "end");
    EXPECT_FALSE(store.take_notification("a", kT0 + std::chrono::seconds(4), lease));
    store.notification_done(end->id);
    // A lease that ran out (its sender died) gives it to the next taker, under a new lease: the
    // first one's late failure no longer touches it.
    const auto again = store.take_notification("a", kT0 + std::chrono::seconds(44), lease);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->id, open->id);
    EXPECT_NE(again->lease, open->lease);
    store.notification_failed(*open, "late");
    EXPECT_FALSE(store.take_notification("a", kT0 + std::chrono::seconds(45), lease))
        << "the late failure freed it";
    store.notification_failed(*again, "HTTP 503");
    const auto third = store.take_notification("a", kT0 + std::chrono::seconds(46), lease);
    ASSERT_TRUE(third);
    EXPECT_EQ(third->id, open->id);
    EXPECT_EQ(third->attempts, 1) << "only the lease holder's failure counts";
    // A failure ends the lease at once: the next taker has it without waiting it out.
    store.notification_failed(*third, "HTTP 503");
    EXPECT_EQ(store.take_notification("a", kT0 + std::chrono::seconds(47), lease)->id, open->id);
    EXPECT_EQ(store.forget_notifications_except({"a"}), 1);
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"a", 1}}));
}

// A robot takes a message every 3 s: what a city's canteens queued at one hour (missed
// disinfections, severity 2 or 3) held a gas leak (severity 1) back for minutes. The most urgent
// alert's go first; within a severity, and an alert's own open and end, in the order they came.
TEST(NotifyQueue, TheMostUrgentAlertsGoFirst) {
    Store store(":memory:");
    store.set_notify_routes(
        [](const EventMessage&, const std::string&) { return std::vector<std::string>{"a"}; });
    const std::string e3 = "19ab3c0f2e1-00000003";
    store.add_event(message(kE1, "start", 3), kT0);
    store.add_event(message(e3, "start", 2), kT0 + std::chrono::seconds(1));
    store.add_event(message(kE1, "end", 3), kT0 + std::chrono::seconds(2));
    store.add_event(message(kE2, "start", 1), kT0 + std::chrono::seconds(3));  // the gas leak, last in
    std::vector<std::string> order;
    while (const auto n =
               store.take_notification("a", kT0 + std::chrono::seconds(4), std::chrono::seconds(40))) {
        order.push_back(n->event_id + ":" + n->kind);
        store.notification_done(n->id);
    }
    EXPECT_EQ(order, (std::vector<std::string>{kE2 + ":open", e3 + ":open", kE1 + ":open", kE1 + ":end"}));
}

TEST(NotifyQueue, AnEndWhoseStartWasLostOpensAndEndsAtOnce) {
    Store store(":memory:");
    store.set_notify_routes(
        [](const EventMessage&, const std::string&) { return std::vector<std::string>{"a"}; });
    store.add_event(message(kE1, "end"), kT0);
    EXPECT_EQ(store.take_notification("a", kT0, std::chrono::seconds(40))->kind, "open");
    EXPECT_EQ(store.take_notification("a", kT0, std::chrono::seconds(40))->kind, "end");
}

// A disinfection cabinet that misses a second window while its alert is open: the duty officer
// heard of the first only, and a regulator's tally from the messages read one. Each further window
// is a notification of its own ("again:<n>", once each), for the targets that take `again` (by
// default the robots people read; a JSON endpoint when its `on` lists it).
TEST(NotifyQueue, AFurtherMissedWindowIsNotifiedOnceEach) {
    Store store(":memory:");
    const auto cfg = config(R"(notify:
  targets:
    - {name: duty, url: "http://x/", format: wecom}
    - {name: firsts, url: "http://x/", format: wecom, on: [open]}
    - {name: all, url: "http://x/", format: dingtalk, on: [open, again, end]}
    - {name: program, url: "http://x/"}
    - {name: program-again, url: "http://x/", on: [open, again]}
)");
    store.set_notify_routes([&](const EventMessage& m, const std::string& kind) {
        return notify_targets_for(cfg.notify, m, kind);
    });
    const auto missed = [&](const std::string& state, std::optional<int> windows) {
        return message(kE1, state, 2, "disinfection", "sch-0101", "missed_cycle", windows);
    };
    store.add_event(missed("start", 1), kT0);
    store.add_event(missed("update", 2), kT0 + std::chrono::hours(8));
    store.add_event(missed("update", 2),
                    kT0 + std::chrono::hours(8) + std::chrono::seconds(1));  // redelivered
    store.add_event(missed("update", 3), kT0 + std::chrono::hours(16));
    EXPECT_EQ(store.queued_notifications(),
              (std::map<std::string, std::int64_t>{
                  {"duty", 3}, {"firsts", 1}, {"all", 3}, {"program", 1}, {"program-again", 3}}));
    const auto lease = std::chrono::seconds(40);
    std::vector<std::string> kinds;
    while (const auto n = store.take_notification("all", kT0 + std::chrono::hours(17), lease)) {
        kinds.push_back(n->kind);
        store.notification_done(n->id);
    }
    EXPECT_EQ(kinds, (std::vector<std::string>{"open", "again:2", "again:3"}));
    EXPECT_EQ(notify_again_count("again:12"), 12);
    EXPECT_FALSE(notify_again_count("again"));
    EXPECT_FALSE(notify_again_count("again:2x"));
    EXPECT_FALSE(notify_again_count("end"));

    // What each kind of target reads of it.
    auto alert = *store.alert(kE1);
    EXPECT_EQ(alert.windows_missed, 3);
    const json aj = {{"id", kE1}};
    const auto ding = json::parse(render_notification(cfg.notify.targets[2], "", alert, "again:3", aj).body);
    EXPECT_EQ(ding["markdown"]["title"], "Again: disinfection / missed_cycle at sch-0101");
    const std::string text = ding["markdown"]["text"];
    EXPECT_NE(text.find("**Again, severity 2 (serious): disinfection / missed_cycle**, 3 windows missed"),
              std::string::npos)
        << text;
    EXPECT_EQ(json::parse(render_notification(cfg.notify.targets[4], "", alert, "again:2", aj).body),
              (json{{"key", kE1 + ":again:2"}, {"kind", "again"}, {"windows_missed", 2}, {"alert", aj}}));
}

TEST(NotifyQueue, WaitsInTheDatabaseForTheNextStart) {
    const auto path =
        (std::filesystem::temp_directory_path() / ("kg-notify-" + std::to_string(getpid()) + ".db")).string();
    std::filesystem::remove(path);
    {
        Store store(path);
        store.set_notify_routes(
            [](const EventMessage&, const std::string&) { return std::vector<std::string>{"a"}; });
        store.add_event(message(kE1, "start"), kT0);
    }
    Store reopened(path);
    EXPECT_TRUE(reopened.take_notification("a", kT0, std::chrono::seconds(40)));
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

TEST(NotifyQueue, DropsWhatWaitedTooLongButNotWhatIsBeingSent) {
    Store store(":memory:");
    store.set_notify_routes([](const EventMessage& m, const std::string&) {
        return std::vector<std::string>{m.check == "gas" ? "b" : "a"};
    });
    store.add_event(message(kE1, "start"), kT0);
    store.add_event(message(kE2, "start"), kT0);
    store.add_event(message("19ab3c0f2e1-00000003", "start", 1, "gas"), kT0);
    ASSERT_TRUE(store.take_notification("b", kT0, std::chrono::seconds(40)));
    EXPECT_EQ(store.drop_notifications_queued_before("b", kT0 + std::chrono::hours(1),
                                                     kT0 + std::chrono::seconds(1)),
              0);
    EXPECT_EQ(store.drop_notifications_queued_before("a", kT0, kT0), 0) << "queued at the cutoff, not before";
    EXPECT_EQ(store.drop_notifications_queued_before("a", kT0 + std::chrono::seconds(1), kT0), 2);
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"b", 1}}));
}

TEST(Notifier, PostsEachQueuedAlertOnceToARealServer) {
    WebhookServer server({{200, "{}"}});
    auto cfg = config("notify:\n  dashboard_url: http://room/\n  targets: [{name: hook, url: '" +
                      server.url() + "', severities: [1]}]\n");
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    notifier.start();
    store.add_event(message(kE1, "start", 1), kg::Clock::now());
    store.add_event(message(kE2, "start", 2), kg::Clock::now());  // not a severity the target takes
    notifier.wake();
    const auto got = server.wait_for(1, std::chrono::seconds(10));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].method(), http::verb::post);
    EXPECT_EQ(got[0].target(), "/hook");
    EXPECT_EQ(got[0][http::field::content_type], "application/json");
    const auto body = json::parse(got[0].body());
    EXPECT_EQ(body["kind"], "open");
    EXPECT_EQ(body["alert"]["id"], kE1);
    EXPECT_EQ(body["alert"]["severity"], 1);
    EXPECT_EQ(body["link"], "http://room/#alert=19ab3c0f2e1-00000001");
    // Sent and out of the queue: nothing goes twice. The server has the request before the
    // notifier has its answer: give it time on a loaded machine.
    for (int i = 0; i < 500 && !store.queued_notifications().empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_TRUE(store.queued_notifications().empty());
    notifier.wake();
    EXPECT_EQ(server.wait_for(2, std::chrono::seconds(1)).size(), 1u);
    notifier.stop();
    const auto metrics = notifier.metrics_text();
    EXPECT_NE(metrics.find("kgm_notifications_total{target=\"hook\",result=\"sent\"} 1"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("kgm_notifications_queued{target=\"hook\"} 0"), std::string::npos) << metrics;
}

TEST(Notifier, KeepsWhatTheTargetRefusesAndSaysWhy) {
    WebhookServer server({{200, R"({"errcode":93000,"errmsg":"invalid webhook url"})"}});
    auto cfg = config("notify:\n  targets: [{name: robot, format: wecom, url: '" + server.url() + "'}]\n");
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    notifier.start();
    store.add_event(message(kE1, "start"), kg::Clock::now());
    notifier.wake();
    ASSERT_EQ(server.wait_for(1, std::chrono::seconds(10)).size(), 1u);
    notifier.stop();
    // Still queued, for the back-off's next try.
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"robot", 1}}));
    const auto metrics = notifier.metrics_text();
    EXPECT_NE(metrics.find("kgm_notification_failures_total{target=\"robot\"} 1"), std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("kgm_notifications_total{target=\"robot\",result=\"sent\"} 0"), std::string::npos);
}

// A robot's answer is read up to 64 KiB, and its errmsg was kept whole and searched for keys with a
// std::regex that recursed once per character: an errmsg of 30 KB after "key=" overflowed the
// stack, and the monitor crashed at every retry of the notification (a review, 50 000 bytes). The
// reason is cut to 200 bytes, printable, and its keys hidden by a plain scan.
TEST(Notifier, ARobotsLongAnswerIsCutAndItsKeysHiddenWithoutCrashingTheRoom) {
    using F = NotifyTarget::Format;
    const std::string secret(50000, 'a');
    const std::string body = R"({"errcode":93000,"errmsg":"bad\nline key=)" + secret + R"("})";
    std::string why;
    EXPECT_EQ(notification_verdict(F::wecom, {200, body, ""}, why), NotifyVerdict::target_failed);
    EXPECT_LE(why.size(), 220u);
    EXPECT_EQ(why.find('\n'), std::string::npos) << "a line of the robot's own in the room's log";
    EXPECT_EQ(redact_secrets(why), "errcode 93000: bad line key=***") << why;
    // The scan on its own: every value of the three names, whatever it ends with.
    EXPECT_EQ(redact_secrets("https://qyapi/send?key=k1&x=1 access_token=t2 'sign=s3' key= key"),
              "https://qyapi/send?key=***&x=1 access_token=*** 'sign=***' key= key");
    EXPECT_EQ(redact_secrets("monkey=banana"), "monkey=***") << "as the pattern did: names are not words";
    EXPECT_EQ(redact_secrets(std::string(1 << 20, 'x') + "key=" + secret).size(), (1u << 20) + 7u);

    WebhookServer server({{200, body}});
    auto cfg = config("notify:\n  targets: [{name: robot, format: wecom, url: '" + server.url() + "'}]\n");
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    notifier.start();
    store.add_event(message(kE1, "start"), kg::Clock::now());
    notifier.wake();
    ASSERT_EQ(server.wait_for(1, std::chrono::seconds(10)).size(), 1u);
    for (int i = 0;
         i < 500 && notifier.metrics_text().find("failures_total{target=\"robot\"} 1") == std::string::npos;
         ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    notifier.stop();
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"robot", 1}}));
    EXPECT_NE(notifier.metrics_text().find("kgm_notification_failures_total{target=\"robot\"} 1"),
              std::string::npos);
}

TEST(HttpPost, SaysWhatFailedAndWhen) {
    // A port nobody listens on: a clear error, no exception.
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = a.local_endpoint().port();
    a.close();
    const auto refused = http_post(*parse_web_url("http://127.0.0.1:" + std::to_string(port) + "/"), "{}",
                                   "application/json", std::chrono::seconds(2));
    EXPECT_EQ(refused.status, 0);
    EXPECT_EQ(refused.error, "connect: Connection refused");
    // A server that takes the connection and never answers.
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto answer =
        http_post(*parse_web_url("http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/"),
                  "{}", "application/json", std::chrono::milliseconds(300));
    EXPECT_EQ(answer.status, 0);
    EXPECT_EQ(answer.error, "read the answer: timed out after 0.3 s");
}

TEST(HttpPost, AnAnswerLongerThanItReadsIsJudgedByItsStatus) {
    WebhookServer server({{200, std::string(200 * 1024, 'x')}});
    const auto answer =
        http_post(*parse_web_url(server.url()), "{}", "application/json", std::chrono::seconds(10));
    EXPECT_EQ(answer.status, 200) << answer.error;
    EXPECT_TRUE(answer.error.empty()) << answer.error;
    EXPECT_LE(answer.body.size(), 64u * 1024);
}

TEST(Notifier, TriesADownTargetOnceForAllItWaitsForAndDropsThemAfterGiveUp) {
    WebhookServer server({{503, "busy"}});
    // give_up far below the file's minimum (1m): the loader is for operators, this is the mechanism.
    auto cfg = config("notify:\n  targets: [{name: hook, url: '" + server.url() + "'}]\n");
    cfg.notify.targets[0].give_up = std::chrono::milliseconds(1500);
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    for (int i = 1; i <= 5; ++i)
        store.add_event(message(fmt::format("19ab3c0f2e1-1000000{}", i), "start"), kg::Clock::now());
    notifier.start();
    ASSERT_EQ(server.wait_for(1, std::chrono::seconds(10)).size(), 1u);
    // The first failure puts the target off 5 s; past give_up, a wake drops all five at once.
    std::this_thread::sleep_for(std::chrono::milliseconds(1600));
    notifier.wake();
    for (int i = 0; i < 100 && !store.queued_notifications().empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    notifier.stop();
    EXPECT_TRUE(store.queued_notifications().empty());
    // One attempt for the five: the others waited behind the first, oldest first.
    EXPECT_EQ(server.wait_for(2, std::chrono::milliseconds(10)).size(), 1u);
    const auto metrics = notifier.metrics_text();
    EXPECT_NE(metrics.find("kgm_notifications_total{target=\"hook\",result=\"dropped\"} 5"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("kgm_notification_failures_total{target=\"hook\"} 1"), std::string::npos)
        << metrics;
}

TEST(Notifier, ATargetThatHangsHoldsUpNoOther) {
    // Takes connections and never answers: every attempt costs the whole timeout (20 s here, longer
    // than the test waits for the other target).
    asio::io_context io;
    asio::ip::tcp::acceptor hung(io, {asio::ip::make_address("127.0.0.1"), 0});
    hung.non_blocking(true);
    asio::ip::tcp::socket hung_connection(io);
    WebhookServer server({{200, "{}"}});
    const auto hung_url = "http://127.0.0.1:" + std::to_string(hung.local_endpoint().port()) + "/";
    auto cfg = config("notify:\n  targets:\n    - {name: hung, timeout: 20s, severities: [1], url: '" +
                      hung_url + "'}\n    - {name: fine, severities: [2], url: '" + server.url() + "'}\n");
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    // Declared after the notifier, so run before its destructor (which joins the hung attempt): the
    // hung target's connection is closed, its attempt fails at once.
    struct Hangup {
        asio::ip::tcp::acceptor& acceptor;
        asio::ip::tcp::socket& connection;
        ~Hangup() {
            beast::error_code ec;
            connection.close(ec);
            acceptor.close(ec);
        }
    } hangup{hung, hung_connection};
    notifier.start();
    // First the hung target's alert, until its attempt hangs on our connection.
    store.add_event(message(kE1, "start", 1), kg::Clock::now());
    notifier.wake();
    beast::error_code ec = asio::error::would_block;
    for (int i = 0; i < 1000 && ec == asio::error::would_block; ++i) {
        hung.accept(hung_connection, ec);
        if (ec == asio::error::would_block) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_FALSE(ec) << "the hung target was never tried: " << ec.message();
    // Then the fine target's: sent while the hung attempt still waits for its answer.
    store.add_event(message(kE2, "start", 2), kg::Clock::now());
    notifier.wake();
    ASSERT_EQ(server.wait_for(1, std::chrono::seconds(10)).size(), 1u) << "waited behind the hung target";
    const auto metrics = notifier.metrics_text();
    EXPECT_NE(metrics.find("kgm_notification_failures_total{target=\"hung\"} 0"), std::string::npos)
        << "the hung attempt ended before the other target was sent to:\n"
        << metrics;
    hung_connection.close(ec);  // the hung attempt fails now rather than after its 20 s
    notifier.stop();
    EXPECT_EQ(store.queued_notifications(), (std::map<std::string, std::int64_t>{{"hung", 1}}));
}

TEST(Notifier, DropsAMessageTheEndpointRefusesAndGoesOnWithTheNext) {
    WebhookServer server({{422, R"({"error":"value: expected a number"})"}, {200, "{}"}});
    auto cfg = config("notify:\n  targets: [{name: hook, url: '" + server.url() + "'}]\n");
    Store store(":memory:");
    Notifier notifier(store, cfg, kg::Logging::null_logger());
    store.add_event(message(kE1, "start"), kg::Clock::now());
    store.add_event(message(kE2, "start"), kg::Clock::now());
    notifier.start();
    const auto got = server.wait_for(2, std::chrono::seconds(10));
    ASSERT_EQ(got.size(), 2u) << "the second waited behind the refused first";
    EXPECT_EQ(json::parse(got[1].body())["alert"]["id"], kE2);
    // The server has the request before the notifier has its answer.
    for (int i = 0; i < 500 && !store.queued_notifications().empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    notifier.stop();
    EXPECT_TRUE(store.queued_notifications().empty());
    const auto metrics = notifier.metrics_text();
    EXPECT_NE(metrics.find("kgm_notifications_total{target=\"hook\",result=\"dropped\"} 1"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("kgm_notifications_total{target=\"hook\",result=\"sent\"} 1"), std::string::npos);
}

TEST(Notifier, TwoInstancesOnOneDatabaseSendEachNotificationOnce) {
    const auto path =
        (std::filesystem::temp_directory_path() / ("kg-notify-two-" + std::to_string(getpid()) + ".db"))
            .string();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    WebhookServer server({{200, "{}"}});
    auto cfg = config("notify:\n  targets: [{name: hook, url: '" + server.url() + "'}]\n");
    Store a(path), b(path);
    Notifier first(a, cfg, kg::Logging::null_logger()), second(b, cfg, kg::Logging::null_logger());
    first.start();
    second.start();
    constexpr int kAlerts = 20;
    for (int i = 0; i < kAlerts; ++i) {
        // Half arrive at each instance, as a share group splits them.
        (i % 2 ? a : b).add_event(message(fmt::format("19ab3c0f2e1-2{:07}", i), "start"), kg::Clock::now());
        first.wake();
        second.wake();
    }
    server.wait_for(kAlerts, std::chrono::seconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a second sending would have come
    first.stop();
    second.stop();
    std::set<std::string> ids;
    const auto got = server.wait_for(kAlerts + 1, std::chrono::milliseconds(10));
    for (const auto& r : got) ids.insert(json::parse(r.body())["alert"]["id"].get<std::string>());
    EXPECT_EQ(got.size(), static_cast<std::size_t>(kAlerts));
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kAlerts));
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

TEST(Notify, TextFromASiteCannotAddMarkupToARobotsMessage) {
    Store store(":memory:");
    auto m = message(kE1, "start");
    m.label = "open](http://evil.example/)\n# Everything is fine";
    store.add_event(m, kT0);
    const auto cfg = config("notify: {targets: [{name: w, url: 'http://x/', format: wecom}]}\n");
    const auto body = json::parse(
        render_notification(cfg.notify.targets[0], "https://room/", *store.alert(kE1), "open", json::object())
            .body);
    const std::string content = body["markdown"]["content"];
    EXPECT_EQ(content.find("](http://evil"), std::string::npos) << content;
    EXPECT_EQ(content.find("\n# "), std::string::npos) << content;
    EXPECT_NE(content.find("open\uFF3D\uFF08http://evil.example/\uFF09 \uFF03 Everything is fine"),
              std::string::npos)
        << content;
    EXPECT_NE(content.find("mask / open"), std::string::npos) << "underscores and words stay as they are";
}
