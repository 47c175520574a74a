#include "monitor/notifier.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/hmac.hpp"
#include "common/short_text.hpp"
#include "monitor/api.hpp"
#include "monitor/iso_time.hpp"

namespace kg::monitor {

using nlohmann::json;

namespace {

constexpr auto kPoll = std::chrono::seconds(1);
constexpr auto kMaxRetry = std::chrono::minutes(5);  // the senders' Backoff's cap
// A lease outlives the attempt it covers: another instance never takes a notification still being sent.
constexpr auto kLeaseMargin = std::chrono::seconds(30);
constexpr auto kRobotInterval = std::chrono::seconds(3);
constexpr auto kExpiryCheck = std::chrono::minutes(1);

bool listed(const std::vector<std::string>& list, const std::string& value) {
    return list.empty() || std::find(list.begin(), list.end(), value) != list.end();
}

std::string base64(const std::string& bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    const int written =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                        reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(written));
    return out;
}

std::string url_encode(const std::string& text) {
    std::string out;
    for (const unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

// The room's local time: duty officers read their own clock, not UTC.
std::string local_time(const std::string& iso) {
    const auto t = parse_iso8601_utc(iso);
    if (!t) return iso;
    const std::time_t tt = Clock::to_time_t(*t);
    std::tm tm{};
    if (localtime_r(&tt, &tm) == nullptr) return iso;
    char out[48];
    return std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S %z", &tm) > 0 ? std::string(out) : iso;
}

const char* severity_word(int severity) {
    switch (severity) {
        case 1:
            return "urgent";
        case 2:
            return "serious";
        default:
            return "routine";
    }
}

// Text a site sent, made inert in markdown: a gateway (or whoever holds its broker account) must
// not put a link or a heading into a duty group's message. Markup characters become their
// full-width forms, which read the same; line breaks become spaces.
std::string plain(const std::string& text) {
    static constexpr std::pair<char, const char*> kFullWidth[] = {
        {'[', "\uFF3B"}, {']', "\uFF3D"}, {'(', "\uFF08"}, {')', "\uFF09"}, {'*', "\uFF0A"}, {'`', "\uFF40"},
        {'#', "\uFF03"}, {'<', "\uFF1C"}, {'>', "\uFF1E"}, {'\n', " "},     {'\r', " "}};
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto* hit = std::find_if(std::begin(kFullWidth), std::end(kFullWidth),
                                       [c](const auto& entry) { return entry.first == c; });
        if (hit != std::end(kFullWidth)) {
            out += hit->second;
        } else {
            out += c;
        }
    }
    return out;
}

// The lines of a WeCom or DingTalk markdown message (both read the same subset).
std::string markdown(const std::string& dashboard_url, const Alert& a, const std::string& kind) {
    const std::string check = plain(a.check), label = plain(a.label);
    std::string text;
    if (kind == kNotifyOpen) {
        text = fmt::format("**Alert, severity {} ({}): {} / {}**\n", a.severity, severity_word(a.severity),
                           check, label);
    } else if (const auto again = notify_again_count(kind)) {
        text = fmt::format("**Again, severity {} ({}): {} / {}**, {} windows missed\n", a.severity,
                           severity_word(a.severity), check, label, *again);
    } else {
        text =
            fmt::format("**Ended: {} / {}** ({})\n", check, label, plain(a.end_reason.value_or("cleared")));
    }
    text += fmt::format("> Site: {}\n> Where: {} {}\n", plain(a.site), a.source_kind, plain(a.source));
    if (a.value) text += fmt::format("> Value: {:g} {}\n", *a.value, plain(a.unit));
    if (a.cause) {
        // The room's own JSON of it (read_event_cause): a kind and a short text.
        const auto cause = nlohmann::json::parse(*a.cause, nullptr, false);
        if (cause.is_object() && cause.contains("kind") && cause.contains("text"))
            text += fmt::format("> Cause: {} ({})\n", plain(cause["kind"].get<std::string>()),
                                plain(cause["text"].get<std::string>()));
    }
    if (a.windows_missed) text += fmt::format("> Windows missed: {}\n", *a.windows_missed);
    text += fmt::format("> Since: {}\n", local_time(a.start_time));
    if (kind == kNotifyEnd && a.end_time) text += fmt::format("> Ended: {}\n", local_time(*a.end_time));
    text += fmt::format("> Received: {}\n", local_time(a.received_at));
    if (!dashboard_url.empty())
        text += fmt::format("\n[Open in the dashboard]({}#alert={})", dashboard_url, a.id);
    return text;
}

}  // namespace

std::string redact_secrets(std::string_view text) {
    // A plain scan: std::regex recursed once per character matched, and a robot's 30 KB answer
    // after "key=" overflowed the stack (the monitor crashed at every retry of that notification).
    static constexpr std::string_view kNames[] = {"key=", "access_token=", "sign="};
    const auto ends_value = [](char c) {
        return c == '&' || c == '"' || c == '\'' || c == '<' || std::isspace(static_cast<unsigned char>(c));
    };
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t name = 0;
        for (const auto n : kNames)
            if (text.substr(i, n.size()) == n) name = n.size();
        const std::size_t value = i + name;
        if (name == 0 || value >= text.size() || ends_value(text[value])) {
            out += text[i++];
            continue;
        }
        out.append(text.substr(i, name));
        out += "***";
        i = value;
        while (i < text.size() && !ends_value(text[i])) ++i;
    }
    return out;
}

std::vector<std::string> notify_targets_for(const NotifySettings& settings, const EventMessage& m,
                                            const std::string& kind) {
    std::vector<std::string> out;
    for (const auto& t : settings.targets) {
        const bool on = kind == kNotifyOpen ? t.on_open : notify_again_count(kind) ? t.on_again : t.on_end;
        if (!on) continue;
        if (std::find(t.severities.begin(), t.severities.end(), m.severity) == t.severities.end()) continue;
        if (!listed(t.checks, m.check) || !listed(t.labels, m.label) || !listed(t.sites, m.site)) continue;
        out.push_back(t.name);
    }
    return out;
}

NotifyBody render_notification(const NotifyTarget& target, const std::string& dashboard_url,
                               const Alert& alert, const std::string& kind, const json& alert_json) {
    switch (target.format) {
        case NotifyTarget::Format::wecom:
            return {"application/json",
                    json{{"msgtype", "markdown"},
                         {"markdown", {{"content", markdown(dashboard_url, alert, kind)}}}}
                        .dump(-1, ' ', false, json::error_handler_t::replace)};
        case NotifyTarget::Format::dingtalk: {
            const auto title = fmt::format("{}: {} / {} at {}",
                                           kind == kNotifyOpen        ? "Alert"
                                           : notify_again_count(kind) ? "Again"
                                                                      : "Ended",
                                           alert.check, alert.label, alert.site);
            return {"application/json",
                    json{{"msgtype", "markdown"},
                         {"markdown", {{"title", title}, {"text", markdown(dashboard_url, alert, kind)}}}}
                        .dump(-1, ' ', false, json::error_handler_t::replace)};
        }
        case NotifyTarget::Format::json:
            break;
    }
    // `key` is the same for every attempt: a receiver that got it once drops a repeat.
    json body = {{"key", alert.id + ":" + kind}, {"alert", alert_json}};
    if (const auto again = notify_again_count(kind)) {
        body["kind"] = std::string(kNotifyAgain);
        body["windows_missed"] = *again;
    } else {
        body["kind"] = kind;
    }
    if (!dashboard_url.empty()) body["link"] = dashboard_url + "#alert=" + alert.id;
    return {"application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

std::string dingtalk_signed_url(const std::string& url, const std::string& secret,
                                std::int64_t timestamp_ms) {
    const auto mac = hmac_sha256(secret, fmt::format("{}\n{}", timestamp_ms, secret));
    const char joiner = url.find('?') == std::string::npos ? '?' : '&';
    return fmt::format("{}{}timestamp={}&sign={}", url, joiner, timestamp_ms, url_encode(base64(mac)));
}

NotifyVerdict notification_verdict(NotifyTarget::Format format, const HttpAnswer& answer, std::string& why) {
    if (answer.status == 0) {
        why = answer.error;
        return NotifyVerdict::target_failed;
    }
    if (answer.status < 200 || answer.status > 299) {
        why = fmt::format("HTTP {}: {}", answer.status, shortened_text(answer.body, 200));
        // What an endpoint says of this one body (malformed, too large, not acceptable), as opposed to
        // itself (down, busy, moved, not authorised): retrying would only hold up the ones behind it.
        const bool this_body =
            answer.status == 400 || answer.status == 413 || answer.status == 415 || answer.status == 422;
        return format == NotifyTarget::Format::json && this_body ? NotifyVerdict::message_refused
                                                                 : NotifyVerdict::target_failed;
    }
    if (format == NotifyTarget::Format::json) return NotifyVerdict::taken;
    // The robots answer 200 with {"errcode": N, "errmsg": ...}: a wrong key, a bad signature or a rate
    // limit is an errcode, not a status. All are the robot's, not the message's: ours are short.
    const auto j = json::parse(answer.body, nullptr, false);
    if (j.is_object() && j.contains("errcode") && j["errcode"].is_number_integer()) {
        if (j["errcode"].get<long long>() == 0) return NotifyVerdict::taken;
        // Cut short and printable, as the other answers are: the robot's text goes to the log and the
        // store, and a robot (or what answers in its place) may say anything.
        why = fmt::format("errcode {}: {}", j["errcode"].get<long long>(),
                          j.contains("errmsg") && j["errmsg"].is_string()
                              ? shortened_text(j["errmsg"].get<std::string>(), 200)
                              : "");
        return NotifyVerdict::target_failed;
    }
    why = fmt::format("HTTP {} without the robot's errcode: {}", answer.status,
                      shortened_text(answer.body, 200));
    return NotifyVerdict::target_failed;
}

Notifier::Notifier(Store& store, const MonitorConfig& cfg, std::shared_ptr<spdlog::logger> log)
    : store_(store), cfg_(cfg), log_(std::move(log)) {
    for (const auto& t : cfg_.notify.targets) senders_.push_back(std::make_unique<Sender>(t));
    store_.set_notify_routes([this](const EventMessage& m, const std::string& kind) {
        return notify_targets_for(cfg_.notify, m, kind);
    });
}

Notifier::~Notifier() {
    stop();
    store_.set_notify_routes({});  // the routes read this object's settings
}

void Notifier::start() {
    const auto queued = store_.queued_notifications();
    for (auto& s : senders_) {
        if (const auto it = queued.find(s->target.name); it != queued.end())
            log_->info("{} notification(s) to {} waiting from before", it->second, s->target.name);
        s->worker.start([this, &s = *s] { run(s); });
    }
}

void Notifier::stop() {
    // All asked at once, then joined: each may be in the middle of one attempt (at most its timeout).
    for (auto& s : senders_) s->worker.request_stop();
    for (auto& s : senders_) s->worker.stop();
}

void Notifier::wake() {
    for (auto& s : senders_) s->worker.wake();
}

void Notifier::run(Sender& s) {
    Duration wait{0};
    do {
        try {
            wait = step(s);
        } catch (const std::exception& e) {
            // The queue stays in the store; the next poll tries again.
            log_->error("notifications to {}: {}", s.target.name, e.what());
            wait = std::chrono::duration_cast<Duration>(kPoll);
        }
    } while (wait.count() == 0 ? !s.worker.stopping() : s.worker.wait_for(wait));
}

Duration Notifier::step(Sender& s) {
    const auto& target = s.target;
    const auto now = Clock::now();
    // In bulk: behind a target down for long, thousands may pass their time together. At the first
    // step (for what waited while the room was down), then every minute or quarter of give_up: a
    // write each poll would compete with ingest for the database for nothing.
    const auto steady = std::chrono::steady_clock::now();
    if (steady >= s.next_expiry_check) {
        s.next_expiry_check =
            steady + std::min(std::chrono::duration_cast<Duration>(kExpiryCheck), target.give_up / 4);
        if (const auto n = store_.drop_notifications_queued_before(target.name, now - target.give_up, now);
            n > 0) {
            s.dropped += static_cast<std::uint64_t>(n);
            log_->error("{} notification(s) to {} dropped: not taken within {} h; last error: {}", n,
                        target.name, std::chrono::duration<double, std::ratio<3600>>(target.give_up).count(),
                        s.last_error.empty() ? "none in this run" : s.last_error);
        }
    }
    // Not before the back-off's or the rate limit's time, however often a new alert wakes it.
    if (steady < s.next_send) return std::chrono::duration_cast<Duration>(s.next_send - steady) + Duration(1);
    const auto n = store_.take_notification(target.name, now, target.timeout + kLeaseMargin);
    if (!n) return std::chrono::duration_cast<Duration>(kPoll);
    const auto alert = store_.alert(n->event_id);
    if (!alert) {
        // Deleted by retention while it waited: there is nothing left to show.
        log_->info("notification of alert {} to {} dropped: the alert is no longer kept", n->event_id,
                   target.name);
        ++s.dropped;
        store_.notification_done(n->id);
        return Duration(0);
    }
    const auto body = render_notification(target, cfg_.notify.dashboard_url, *alert, n->kind,
                                          alert_json(*alert, cfg_.deadlines, now));
    const std::string url =
        target.format == NotifyTarget::Format::dingtalk && !target.secret.empty()
            ? dingtalk_signed_url(
                  target.url, target.secret,
                  std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count())
            : target.url;
    std::string why = "the URL cannot be read";  // checked at load; signing adds only a query
    if (const auto parsed = parse_web_url(url)) {
        const auto answer = http_post(*parsed, body.body, body.content_type, target.timeout, target.ca_file);
        const auto verdict = notification_verdict(target.format, answer, why);
        if (verdict == NotifyVerdict::message_refused) {
            ++s.failures;
            ++s.dropped;
            store_.notification_done(n->id);
            log_->error("notification ({}) of alert {} to {} dropped: the target refuses it: {}", n->kind,
                        n->event_id, target.name, redact_secrets(why));
            return Duration(0);
        }
        if (verdict == NotifyVerdict::taken) {
            store_.notification_done(n->id);
            ++s.sent;
            if (s.failing > 0)
                log_->info("notifications to {} delivered again after {} failed attempt(s)", target.name,
                           s.failing);
            s.failing = 0;
            s.backoff.reset();
            // The robots take 20 messages a minute; past that they refuse (DingTalk for 10 minutes).
            if (target.format != NotifyTarget::Format::json)
                s.next_send = std::chrono::steady_clock::now() + kRobotInterval;
            log_->debug("{} of alert {} sent to {}", n->kind, n->event_id, target.name);
            return Duration(0);
        }
    }
    why = redact_secrets(why);
    ++s.failures;
    ++s.failing;
    s.last_error = why;
    store_.notification_failed(*n, why);
    // From now, not from the attempt's start: a target that times out still gets its pause.
    const auto wait = s.backoff.next();
    s.next_send = std::chrono::steady_clock::now() + wait;
    // Once per run of failures at warning: a target down for hours must not flood the log.
    if (s.failing == 1) {
        log_->warn("notifications to {} failing: {}; trying again with back-off up to {} s", target.name, why,
                   std::chrono::duration_cast<std::chrono::seconds>(kMaxRetry).count());
    } else {
        log_->debug("notifications to {} still failing ({} attempts): {}", target.name, s.failing, why);
    }
    return wait;
}

std::string Notifier::metrics_text() {
    std::string out = "# TYPE kgm_notifications_total counter\n";
    for (const auto& s : senders_) {
        out += fmt::format("kgm_notifications_total{{target=\"{}\",result=\"sent\"}} {}\n", s->target.name,
                           s->sent.load());
        out += fmt::format("kgm_notifications_total{{target=\"{}\",result=\"dropped\"}} {}\n", s->target.name,
                           s->dropped.load());
    }
    out += "# TYPE kgm_notification_failures_total counter\n";
    for (const auto& s : senders_)
        out += fmt::format("kgm_notification_failures_total{{target=\"{}\"}} {}\n", s->target.name,
                           s->failures.load());
    out += "# TYPE kgm_notifications_queued gauge\n";
    const auto queued = store_.queued_notifications();
    for (const auto& s : senders_) {
        const auto it = queued.find(s->target.name);
        out += fmt::format("kgm_notifications_queued{{target=\"{}\"}} {}\n", s->target.name,
                           it == queued.end() ? 0 : it->second);
    }
    return out;
}

}  // namespace kg::monitor
