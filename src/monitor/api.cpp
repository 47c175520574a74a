#include "monitor/api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <regex>

#include "common/log_throttle.hpp"
#include "common/short_text.hpp"
#include "monitor/iso_time.hpp"
#include "web/url_query.hpp"

namespace kg::monitor {

using nlohmann::json;

namespace {

const std::regex kEventId("^[A-Za-z0-9_-]{8,80}$");
const std::regex kId("^[A-Za-z0-9_-]{1,64}$");
constexpr std::size_t kMaxNote = 4000;
// A retirement's note goes into the close note of each alert it closes, after the words naming the
// retirement, and a decision's note is at most kMaxNote (decision.schema.json).
constexpr std::size_t kMaxRetireNote = 1000;
constexpr int kMaxLimit = 5000;  // alerts in one answer
// Sensor minutes in one answer: a week is 10,080 a sensor (a site's ten sensors, about 5 MB of JSON).
constexpr Duration kMaxRollupSpan = std::chrono::hours(24 * 7);

std::vector<std::string> path_parts(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t pos = 1;
    while (pos <= path.size()) {
        const auto slash = path.find('/', pos);
        parts.push_back(path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos));
        if (slash == std::string::npos) break;
        pos = slash + 1;
    }
    return parts;
}

Response json_response(const Request& req, const json& body, http::status status = http::status::ok) {
    return make_response(req, status, body.dump(-1, ' ', false, json::error_handler_t::replace),
                         "application/json");
}

json opt(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

// The session cookie's attributes. Behind a reverse proxy that terminates TLS (the page is https
// to the operator's browser) it is Secure: the browser then never sends it over plain HTTP, where
// anyone on the path could take the session. The monitor itself serves plain HTTP only, and a
// Secure cookie over it would not be kept, hence the proxy's word (`https`: X-Forwarded-Proto as
// web::TrustedProxies::forwarded_https believes it).
std::string cookie_attributes(bool https) {
    return https ? "Path=/; HttpOnly; SameSite=Strict; Secure" : "Path=/; HttpOnly; SameSite=Strict";
}

// What the site said (online/offline on its availability topic), made "silent" when it claims online
// but nothing arrived within heartbeat_timeout of `heard_from` (a half-open connection, a hung gateway).
std::string judged(const std::string& availability, std::optional<TimePoint> heard_from, TimePoint at,
                   Duration heartbeat_timeout) {
    if (availability == "online" && (!heard_from || at - *heard_from > heartbeat_timeout)) return "silent";
    return availability;
}

}  // namespace

void add_site_state(json& site, TimePoint now, Duration heartbeat_timeout, const BrokerLinkState& link) {
    const std::string availability =
        site["availability"].is_string() ? site["availability"].get<std::string>() : "unknown";
    std::optional<TimePoint> seen;
    if (site["last_seen"].is_string()) seen = parse_iso8601_utc(site["last_seen"].get<std::string>());
    const std::optional<double> age =
        seen ? std::optional(std::chrono::duration<double>(now - *seen).count()) : std::nullopt;
    site["heartbeat_age_s"] = age ? json(std::round(*age * 10) / 10) : json(nullptr);
    site["state_note"] = nullptr;
    site["last_state"] = nullptr;
    if (!link.connected) {
        // Nothing comes while the room is away: the state it last knew, not a verdict on the site.
        site["state"] = "unknown";
        site["last_state"] = judged(availability, seen, link.since, heartbeat_timeout);
        site["state_note"] =
            fmt::format("the room is not connected to the broker since {}: the site's state is not known",
                        iso8601_utc(link.since));
        return;
    }
    // The room's own outage does not count against the site: its silence is counted from when the
    // room could hear it again (its retained state comes at once, its live messages within its
    // gateway's state_interval).
    const auto heard_from = seen ? std::max(*seen, link.since) : link.since;
    site["state"] = judged(availability, heard_from, now, heartbeat_timeout);
    if (site["state"] == "online" && (!seen || *seen < link.since))
        site["state_note"] = fmt::format(
            "not heard from since the room connected to the broker at {}: silent if nothing comes by {}",
            iso8601_utc(link.since), iso8601_utc(link.since + heartbeat_timeout));
}

json broker_link_json(const BrokerLinkState& link, TimePoint now, Duration heartbeat_timeout) {
    const auto settled = link.since + heartbeat_timeout;
    return {{"connected", link.connected},
            {"since", iso8601_utc(link.since)},
            {"last_error", link.last_error.empty() ? json(nullptr) : json(link.last_error)},
            {"last_error_at", link.last_error_at ? json(iso8601_utc(*link.last_error_at)) : json(nullptr)},
            {"settling_until", link.connected && now < settled ? json(iso8601_utc(settled)) : json(nullptr)}};
}

json alert_json(const Alert& a, const std::array<Deadline, 3>& deadlines, TimePoint now) {
    const auto received = parse_iso8601_utc(a.received_at).value_or(now);
    const auto d = deadline_state(deadlines, a.severity, a.status, received, now);
    json j = {{"id", a.id},
              {"site", a.site},
              {"source_kind", a.source_kind},
              {a.source_kind, a.source},
              {"check", a.check},
              {"label", a.label},
              {"severity", a.severity},
              {"condition", a.condition},
              {"start_time", a.start_time},
              {"end_time", opt(a.end_time)},
              {"end_reason", opt(a.end_reason)},
              {"cause", a.cause ? json::parse(*a.cause, nullptr, false) : json(nullptr)},
              {"windows_missed", a.windows_missed ? json(*a.windows_missed) : json(nullptr)},
              {"score", a.score},
              {"top_score", a.top_score},
              {"received_at", a.received_at},
              {"updated_at", a.updated_at},
              {"status", to_string(a.status)},
              {"acknowledged_by", opt(a.acknowledged_by)},
              {"acknowledged_at", opt(a.acknowledged_at)},
              {"closed_by", opt(a.closed_by)},
              {"closed_at", opt(a.closed_at)},
              {"close_note", opt(a.close_note)},
              {"has_snapshot", a.has_snapshot},
              {"messages", a.messages},
              {"acknowledge_due", d.acknowledge_due ? json(iso8601_utc(*d.acknowledge_due)) : json(nullptr)},
              {"close_due", d.close_due ? json(iso8601_utc(*d.close_due)) : json(nullptr)},
              {"overdue", d.overdue},
              {"overdue_reason", d.overdue ? json(d.overdue_reason) : json(nullptr)}};
    if (a.value) j["value"] = *a.value;
    if (!a.unit.empty()) j["unit"] = a.unit;
    if (a.clip) {
        const auto clip = json::parse(*a.clip, nullptr, false);
        j["clip"] = clip.is_discarded() ? json(nullptr) : clip;
    }
    return j;
}

namespace {

// The body is JSON by its Content-Type: application/json, in any case, with parameters or not
// ("application/jsonx" is not; a media type is case-insensitive, RFC 9110 8.3.1).
bool json_media_type(const Request& req) {
    auto type = req[http::field::content_type];
    type = type.substr(0, type.find(';'));
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
    return boost::beast::iequals(type, "application/json");
}

// Why `site` (its row judged by add_site_state with `link`) may not be retired now; empty when it
// may. Only an offline or silent site is: the room must not close the alerts of a canteen that is
// working, nor guess while it cannot hear any.
std::string retire_refusal(const json& row, const std::string& site, const BrokerLinkState& link,
                           Duration heartbeat_timeout) {
    if (!link.connected)
        return fmt::format(
            "the room is not connected to the broker since {}: whether {} is online is not known; retire it "
            "once the room is connected again",
            iso8601_utc(link.since), site);
    const auto state = row["state"].get<std::string>();
    const auto age = row["heartbeat_age_s"];
    const std::string heard =
        age.is_number() ? fmt::format(", last heard {:.0f} s ago", age.get<double>()) : "";
    const bool sending =
        age.is_number() && age.get<double>() * 1000 <= static_cast<double>(heartbeat_timeout.count());
    // `offline` may be a stale last will (a broker cluster's late one) while the site still sends:
    // retired, its open alerts would be closed in an operator's name and the site back at its next
    // message (the review). Heard since it said offline, and lately: it is sending.
    const auto said = row["availability_time"];
    const auto seen = row["last_seen"];
    if (state == "offline" && sending && said.is_string() && seen.is_string() &&
        seen.get<std::string>() > said.get<std::string>())
        return fmt::format(
            "{} says offline but was heard since{}: its offline may be a broker's stale last will; only a "
            "site that is quiet can be retired",
            site, heard);
    if (state == "offline" || state == "silent") return {};
    if (state == "online")
        return fmt::format(
            "{} is online (its gateway says so{}{}): only a site that is offline or silent can be retired; "
            "stop its gateway first",
            site, heard, row["state_note"].is_string() ? "; " + row["state_note"].get<std::string>() : "");
    // unknown: it never said online or offline. Retired once it is as quiet as a silent site.
    if (sending)
        return fmt::format(
            "{} is sending{} (it never said online or offline): only a site that is offline or silent can be "
            "retired",
            site, heard);
    return {};
}

class Api {
public:
    Api(ApiContext ctx, std::shared_ptr<spdlog::logger> log) : ctx_(std::move(ctx)), log_(std::move(log)) {}

    Reply handle(const Request& req, const Sender& from) {
        const std::string& client = from.client;
        const std::string target(req.target());
        const auto qmark = target.find('?');
        const std::string path = target.substr(0, qmark);
        const auto query = web::parse_query(target);
        const auto method = req.method();
        const auto now = Clock::now();

        // Origin-form only: "xapi/alerts/<id>" was served as /api/alerts/<id>.
        if (!target.starts_with('/'))
            return {error_response(req, http::status::bad_request,
                                   "the request target is not a path (it starts with '/')")};
        // A browser says where a request comes from: a page of another site may post a form here
        // (sign-in as the attacker's operator, whose name every action would then carry; a sign-out),
        // and nothing on this side is meant to be reached from another site.
        if (method != http::verb::get && method != http::verb::head) {
            if (const auto site = req["Sec-Fetch-Site"]; boost::beast::iequals(site, "cross-site"))
                return {error_response(req, http::status::forbidden,
                                       "refused: a request from a page of another site")};
        }

        if (path == "/" || path == "/index.html") {
            if (method != http::verb::get && method != http::verb::head)
                return {error_response(req, http::status::method_not_allowed, "GET only")};
            auto res = make_response(req, http::status::ok, dashboard_html(), "text/html; charset=utf-8");
            // The page loads nothing from elsewhere; say so, so an injected script could not either.
            res.set(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; "
                "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'");
            return {std::move(res)};
        }
        // Every route but sign-in, sign-out and the actions only reads: another method is a
        // mistake the caller should hear about, not a read that looks like it worked.
        const bool reading = method == http::verb::get || method == http::verb::head;
        const auto get_only = [&] {
            return Reply{error_response(req, http::status::method_not_allowed, "GET only")};
        };
        if ((path == "/healthz" || path == "/readyz" || path == "/metrics") && !reading) return get_only();
        if (path == "/healthz") return {make_response(req, http::status::ok, "ok\n")};
        if (path == "/readyz") {
            // Connected but unable to store is not ready: what arrives waits at the broker (Paho's
            // thread retries the message in hand), and a balancer or a probe must hear it.
            const std::string failure = ctx_.store_failure ? ctx_.store_failure() : std::string();
            const bool connected = ctx_.mqtt_connected();
            if (connected && failure.empty()) return {make_response(req, http::status::ok, "ready\n")};
            std::string why = connected ? "" : "not connected to the broker\n";
            if (!failure.empty())
                why += fmt::format(
                    "the database does not take messages (retrying; the broker holds what "
                    "follows): {}\n",
                    failure);
            return {make_response(req, http::status::service_unavailable, why)};
        }
        if (path == "/metrics") return {metrics(req)};
        if (path == "/api/login") {
            if (method != http::verb::post)
                return {error_response(req, http::status::method_not_allowed, "POST only")};
            return {login(req, from, now)};
        }

        const auto who = ctx_.auth.identify(req, now, client);
        if (!who) {
            basic_failed(req, client);
            auto res = error_response(req, http::status::unauthorized, "sign in first");
            // No WWW-Authenticate: the browser must not pop up its own dialog over the page's form.
            return {std::move(res)};
        }
        if (path == "/api/logout") {
            if (method != http::verb::post)
                return {error_response(req, http::status::method_not_allowed, "POST only")};
            if (!json_media_type(req))
                return {error_response(req, http::status::unsupported_media_type, "send application/json")};
            ctx_.auth.logout(req);
            auto res = json_response(req, json{{"ok", true}});
            res.set(http::field::set_cookie,
                    fmt::format("{}=; Max-Age=0; {}", kSessionCookie, cookie_attributes(from.https)));
            return {std::move(res), false, {}, true};
        }
        const auto parts = path_parts(path);
        const bool read_route =
            path == "/api/stream" || path == "/api/me" || path == "/api/sites" || path == "/api/checks" ||
            path == "/api/alerts" || path == "/api/retired-sites" ||
            (parts.size() >= 3 && parts[0] == "api" && parts[1] == "alerts" &&
             (parts.size() == 3 || (parts.size() == 4 && parts[3] == "snapshot.jpg"))) ||
            (parts.size() == 4 && parts[0] == "api" && parts[1] == "sites" && parts[3] == "rollups");
        if (read_route && !reading) return get_only();
        if (path == "/api/stream") {
            // A HEAD asks what a GET would be, not for the stream itself.
            if (method == http::verb::head)
                return {make_response(req, http::status::ok, std::string(), "text/event-stream")};
            Reply r;
            r.event_stream = true;
            // The credentials it opened with, asked again before each ping: a sign-out, a session's
            // end or an operator removed from the configuration ends the stream within a ping.
            Request credentials;
            for (const auto field : {http::field::cookie, http::field::authorization})
                if (const auto it = req.find(field); it != req.end()) credentials.set(field, it->value());
            r.still_signed_in = [&auth = ctx_.auth, credentials = std::move(credentials)] {
                return auth.still_valid(credentials, Clock::now());
            };
            return r;
        }
        if (path == "/api/me") {
            json deadlines = json::array();
            for (const auto& d : ctx_.cfg.deadlines)
                deadlines.push_back(
                    {{"acknowledge_s", d.acknowledge ? json(d.acknowledge->count() / 1000) : json(nullptr)},
                     {"close_s", d.close ? json(d.close->count() / 1000) : json(nullptr)}});
            // The room's own link: while it is down the page says that no site's state is known,
            // rather than show every canteen silent.
            return {json_response(
                req, {{"operator", *who},
                      {"deadlines", deadlines},
                      {"time", iso8601_utc(now)},
                      {"heartbeat_timeout_s", ctx_.cfg.heartbeat_timeout.count() / 1000.0},
                      {"broker", broker_link_json(link_state(), now, ctx_.cfg.heartbeat_timeout)}})};
        }
        if (path == "/api/sites") return {sites(req, now)};
        if (path == "/api/retired-sites") return {json_response(req, ctx_.store.retirements())};
        if (path == "/api/checks") return {json_response(req, ctx_.store.checks())};
        if (path == "/api/alerts") return {alerts(req, query, now)};

        if (parts.size() >= 3 && parts[0] == "api" && parts[1] == "alerts") {
            const std::string& id = parts[2];
            if (!std::regex_match(id, kEventId))
                return {error_response(req, http::status::not_found, "no such alert")};
            if (parts.size() == 3) return {alert(req, id, now)};
            if (parts.size() == 4 && parts[3] == "snapshot.jpg") return {snapshot(req, id)};
            if (parts.size() == 4 && parse_action(parts[3])) {
                if (method != http::verb::post)
                    return {error_response(req, http::status::method_not_allowed, "POST only")};
                return {act(req, id, *parse_action(parts[3]), *who, client, now)};
            }
        }
        if (parts.size() == 4 && parts[0] == "api" && parts[1] == "sites" && parts[3] == "rollups") {
            if (!std::regex_match(parts[2], kId))
                return {error_response(req, http::status::not_found, "no such site")};
            return {rollups(req, parts[2], query, now)};
        }
        if (parts.size() == 4 && parts[0] == "api" && parts[1] == "sites" && parts[3] == "retire") {
            if (method != http::verb::post)
                return {error_response(req, http::status::method_not_allowed, "POST only")};
            if (!std::regex_match(parts[2], kId))
                return {error_response(req, http::status::not_found, "no such site")};
            return {retire(req, parts[2], *who, client, now)};
        }
        return {error_response(req, http::status::not_found, "not found")};
    }

private:
    // A request with HTTP Basic credentials that did not sign in (a wrong password, or one held up
    // for its guesses): counted and logged as a failed sign-in is. Unsaid, a guesser using Basic
    // held up an operator's sign-in with nothing in the log or /metrics to say why.
    void basic_failed(const Request& req, const std::string& client) {
        const auto basic = basic_credentials(req);
        if (!basic) return;
        ++sign_ins_wrong_;
        if (const auto note = sign_in_line(client, basic->name))
            log_->warn("failed HTTP Basic sign-in as '{}' from {}{}", kg::shortened_text(basic->name, 64),
                       client, *note);
    }

    // Whether a failed sign-in's line is logged (a few a minute per address block and operator
    // name: see KeyedLogThrottle), and then what it adds: the lines held back before it.
    std::optional<std::string> sign_in_line(const std::string& client, const std::string& name) {
        const auto v = sign_in_warnings_.pass(ctx_.auth.guess_key(client, name));
        if (!v.log) return std::nullopt;
        return v.held == 0
                   ? std::string()
                   : fmt::format(" [{} more failed sign-in line(s) from there not logged before this one]",
                                 v.held);
    }

    Response login(const Request& req, const Sender& from, TimePoint now) {
        const std::string& client = from.client;
        // JSON only, as the actions: an HTML form of another site can post a text/plain body that
        // reads as JSON, and signed the room's browser in as another operator (the review).
        if (!json_media_type(req))
            return error_response(req, http::status::unsupported_media_type, "send application/json");
        const auto body = json::parse(req.body(), nullptr, false);
        if (!body.is_object() || !body.contains("operator") || !body["operator"].is_string() ||
            !body.contains("password") || !body["password"].is_string())
            return error_response(req, http::status::bad_request,
                                  "expected {\"operator\": ..., \"password\": ...}");
        const std::string name = body["operator"];
        if (const auto wait = ctx_.auth.retry_after(client, name); wait > Duration::zero()) {
            const auto seconds = std::chrono::ceil<std::chrono::seconds>(wait).count();
            ++sign_ins_throttled_;
            if (const auto note = sign_in_line(client, name))
                log_->warn(
                    "sign-in as '{}' from {} refused: too many wrong passwords for it from there, {} s to "
                    "wait{}",
                    kg::shortened_text(name, 64), client, seconds, *note);
            auto res = error_response(
                req, http::status::too_many_requests,
                fmt::format("too many wrong passwords for this operator from this address: try again in {} s",
                            seconds));
            res.set(http::field::retry_after, std::to_string(seconds));
            return res;
        }
        const auto token = ctx_.auth.login(name, body["password"], now, client);
        if (!token) {
            ++sign_ins_wrong_;
            if (const auto note = sign_in_line(client, name))
                log_->warn("failed sign-in as '{}' from {}{}", kg::shortened_text(name, 64), client, *note);
            return error_response(req, http::status::unauthorized, "wrong operator or password");
        }
        log_->info("{} signed in from {}", name, client);
        auto res = json_response(req, json{{"operator", name}});
        res.set(http::field::set_cookie,
                fmt::format("{}={}; Max-Age={}; {}", kSessionCookie, *token,
                            ctx_.auth.session_ttl().count() / 1000, cookie_attributes(from.https)));
        return res;
    }

    Response sites(const Request& req, TimePoint now) {
        auto list = ctx_.store.sites();
        const auto link = link_state();
        for (auto& s : list) add_site_state(s, now, ctx_.cfg.heartbeat_timeout, link);
        return json_response(req, list);
    }

    Response alerts(const Request& req, const std::map<std::string, std::string>& q, TimePoint now) {
        AlertFilter f;
        if (auto it = q.find("site"); it != q.end() && !it->second.empty()) f.site = it->second;
        if (auto it = q.find("check"); it != q.end() && !it->second.empty()) f.check = it->second;
        if (auto it = q.find("severity"); it != q.end() && !it->second.empty()) {
            if (it->second != "1" && it->second != "2" && it->second != "3")
                return error_response(req, http::status::bad_request, "severity is 1, 2 or 3");
            f.severity = std::stoi(it->second);
        }
        if (auto it = q.find("status"); it != q.end() && !it->second.empty() && it->second != "active") {
            if (it->second == "all") {
                f.all = true;
            } else if (const auto s = parse_status(it->second)) {
                f.status = s;
            } else {
                return error_response(req, http::status::bad_request,
                                      "status is active, open, acknowledged, closed or all");
            }
        }
        if (auto it = q.find("limit"); it != q.end()) {
            // Digits only: "-1", "0" or "20x" were taken as 1, 1 and 20 and answered as if asked.
            const auto& v = it->second;
            const auto n = web::whole_number(v, 1, kMaxLimit);
            if (!n)
                return error_response(
                    req, http::status::bad_request,
                    fmt::format("limit '{}' is not a whole number from 1 to {}", v.substr(0, 32), kMaxLimit));
            f.limit = static_cast<int>(*n);
        }
        json out = json::array();
        for (const auto& a : ctx_.store.alerts(f)) out.push_back(alert_json(a, ctx_.cfg.deadlines, now));
        auto res = json_response(req, out);
        // The list stops at `limit`; how many match tells the page (and a script) what it did not get.
        res.set("X-Total-Count", std::to_string(ctx_.store.count_alerts(f)));
        return res;
    }

    Response alert(const Request& req, const std::string& id, TimePoint now) {
        const auto a = ctx_.store.alert(id);
        if (!a) return error_response(req, http::status::not_found, "no such alert");
        json out = alert_json(*a, ctx_.cfg.deadlines, now);
        std::size_t total = 0;
        out["history"] = ctx_.store.alert_history(id, &total);
        out["history_total"] = total;  // more than `history` holds: its first and last messages
        json actions = json::array();
        for (const auto& r : ctx_.store.actions(id))
            actions.push_back({{"seq", r.seq},
                               {"action", r.action},
                               {"status", r.status_after},
                               {"operator", r.operator_name},
                               {"note", r.note},
                               {"time", r.time},
                               {"published_at", opt(r.published_at)}});
        out["actions"] = actions;
        return json_response(req, out);
    }

    Response snapshot(const Request& req, const std::string& id) {
        auto jpeg = ctx_.store.snapshot(id);
        if (!jpeg) return error_response(req, http::status::not_found, "no snapshot for this alert");
        auto res = make_response(req, http::status::ok, std::move(*jpeg), "image/jpeg");
        res.set(http::field::cache_control, "private, max-age=3600");  // a snapshot never changes
        return res;
    }

    // The `note` of an operator action's body ({"note": "..."}, optional), or the answer refusing
    // the request: not JSON, or a note that is not a text or is over `max` bytes.
    std::optional<Response> read_note(const Request& req, std::size_t max, std::string& note) {
        // JSON only: a cross-site form cannot send it without a CORS preflight, which is refused.
        if (!json_media_type(req))
            return error_response(req, http::status::unsupported_media_type, "send application/json");
        json body = json::object();
        if (!req.body().empty()) {
            try {
                body = json::parse(req.body());
            } catch (const json::exception& e) {
                // nlohmann's reason says where (invalid UTF-8 in a note was "expected a JSON object").
                return error_response(req, http::status::bad_request,
                                      "not JSON: " + kg::shortened_text(e.what(), 200));
            }
        }
        if (!body.is_object())
            return error_response(req, http::status::bad_request, "expected a JSON object");
        if (body.contains("note")) {
            if (!body["note"].is_string())
                return error_response(req, http::status::bad_request, "note is a text");
            note = body["note"];
        }
        if (note.size() > max)
            return error_response(
                req, http::status::payload_too_large,
                fmt::format("note too long: {} bytes, at most {} (UTF-8)", note.size(), max));
        return std::nullopt;
    }

    Response act(const Request& req, const std::string& id, Action action, const std::string& who,
                 const std::string& client, TimePoint now) {
        std::string note;
        if (auto refused = read_note(req, kMaxNote, note)) return std::move(*refused);
        const auto result = ctx_.store.act(id, action, who, note, now, ctx_.cfg.mqtt.client_id);
        if (result.code == ActionResult::Code::not_found)
            return error_response(req, http::status::not_found, "no such alert");
        if (result.code == ActionResult::Code::refused)
            return error_response(req, http::status::conflict, result.error);
        log_->info("{} {} {} from {}{}", who, to_string(action), id, client,
                   note.empty() ? "" : ": " + kg::shortened_text(note, 200));  // one printable line
        ctx_.on_action(*result.record);
        const auto a = ctx_.store.alert(id);
        return json_response(req, a ? alert_json(*a, ctx_.cfg.deadlines, now) : json::object());
    }

    // An operator retires a site the room should no longer watch (decommissioned, renamed): its open
    // alerts closed in its name, its cameras, sensors and sequence following forgotten, its row gone.
    // Only a site that is offline or silent: one that is online is working, and would be back at
    // its next message anyway.
    Response retire(const Request& req, const std::string& site, const std::string& who,
                    const std::string& client, TimePoint now) {
        std::string note;
        if (auto refused = read_note(req, kMaxRetireNote, note)) return std::move(*refused);
        auto row = ctx_.store.site(site);
        if (!row) return error_response(req, http::status::not_found, fmt::format("no such site '{}'", site));
        const auto link = link_state();
        add_site_state(*row, now, ctx_.cfg.heartbeat_timeout, link);
        if (const auto why = retire_refusal(*row, site, link, ctx_.cfg.heartbeat_timeout); !why.empty())
            return error_response(req, http::status::conflict, why);
        const auto done = ctx_.store.retire_site(site, who, note, now, ctx_.cfg.mqtt.client_id);
        if (!done)
            return error_response(req, http::status::not_found, fmt::format("no such site '{}'", site));
        log_->info(
            "{} retired site {} from {}: {} open alert(s) closed, {} camera(s) and {} sensor(s) forgotten{}",
            who, site, client, done->closed.size(), done->cameras, done->sensors,
            note.empty() ? "" : ": " + kg::shortened_text(note, 200));  // one printable line
        // Each closed alert is a decision published to the site, and a change the dashboards show.
        json closed = json::array();
        for (const auto& record : done->closed) {
            ctx_.on_action(record);
            closed.push_back(record.event_id);
        }
        if (ctx_.on_site_removed) ctx_.on_site_removed(site);
        return json_response(req, {{"site", site},
                                   {"retired_at", done->retired_at},
                                   {"operator", who},
                                   {"note", note},
                                   {"alerts_closed", closed},
                                   {"cameras", done->cameras},
                                   {"sensors", done->sensors}});
    }

    Response rollups(const Request& req, const std::string& site, const std::map<std::string, std::string>& q,
                     TimePoint now) {
        // Default: the last 24 hours. The page asks for the operator's own day (local midnight).
        TimePoint from_t = now - std::chrono::hours(24), to_t = now + std::chrono::minutes(1);
        if (auto it = q.find("from"); it != q.end()) {
            const auto t = parse_iso8601_utc(it->second);
            if (!t) return error_response(req, http::status::bad_request, "from is an ISO 8601 UTC time");
            from_t = *t;
        }
        if (auto it = q.find("to"); it != q.end()) {
            const auto t = parse_iso8601_utc(it->second);
            if (!t) return error_response(req, http::status::bad_request, "to is an ISO 8601 UTC time");
            to_t = *t;
        }
        // Compared as text with the stored minutes, so written as they are: `...T00:00:00Z` (no
        // milliseconds) sorted after the 00:00 minute's `...T00:00:00.000Z` and left it out. The
        // span is the times' own: a leap second of 2200 is written as 2201, which does not read
        // back (the review found the empty result read).
        const std::string from = iso8601_utc(from_t), to = iso8601_utc(to_t);
        const auto span = to_t - from_t;
        if (span < Duration::zero())
            return error_response(req, http::status::bad_request,
                                  fmt::format("from {} is after to {}", from, to));
        // Built on the HTTP thread under the store's lock: a year of a site's minutes would hold both.
        if (span > kMaxRollupSpan)
            return error_response(
                req, http::status::bad_request,
                fmt::format("from {} to {} is more than {} days: ask for fewer", from, to,
                            std::chrono::duration_cast<std::chrono::hours>(kMaxRollupSpan).count() / 24));
        auto sensors = ctx_.store.rollups(site, from, to);
        if (!sensors)
            return error_response(req, http::status::not_found, fmt::format("no such site '{}'", site));
        return json_response(req,
                             {{"site", site}, {"from", from}, {"to", to}, {"sensors", std::move(*sensors)}});
    }

    Response metrics(const Request& req) {
        std::string out;
        out += fmt::format("# TYPE kgm_mqtt_connected gauge\nkgm_mqtt_connected {}\n",
                           ctx_.mqtt_connected() ? 1 : 0);
        // Every failed sign-in, whether or not its line was logged (those are throttled per address).
        out += fmt::format(
            "# TYPE kgm_sign_ins_failed_total "
            "counter\nkgm_sign_ins_failed_total{{reason=\"wrong_password\"}} "
            "{}\nkgm_sign_ins_failed_total{{reason=\"throttled\"}} {}\n",
            sign_ins_wrong_.load(), sign_ins_throttled_.load());
        if (const auto* c = ctx_.counters) {
            out += "# TYPE kgm_messages_total counter\n";
            out += fmt::format("kgm_messages_total{{outcome=\"received\"}} {}\n", c->received.load());
            out += fmt::format("kgm_messages_total{{outcome=\"created\"}} {}\n", c->created.load());
            out += fmt::format("kgm_messages_total{{outcome=\"updated\"}} {}\n", c->updated.load());
            out += fmt::format("kgm_messages_total{{outcome=\"duplicate\"}} {}\n", c->duplicates.load());
            out += fmt::format("kgm_messages_total{{outcome=\"stale\"}} {}\n", c->stale.load());
            out += fmt::format("kgm_messages_total{{outcome=\"refused\"}} {}\n", c->refused.load());
            out += fmt::format("kgm_messages_total{{outcome=\"expired\"}} {}\n", c->expired.load());
            out += fmt::format("# TYPE kgm_store_retries_total counter\nkgm_store_retries_total {}\n",
                               c->store_retries.load());
            out += fmt::format("# TYPE kgm_lost_messages_total counter\nkgm_lost_messages_total {}\n",
                               c->lost_numbers.load() + (ctx_.replay_given_up ? ctx_.replay_given_up() : 0));
            out += fmt::format(
                "# TYPE kgm_lost_messages_found_total counter\nkgm_lost_messages_found_total {}\n",
                c->found_numbers.load());
        }
        // What /readyz says, as a gauge an alert rule can watch: while it is 1, every site's messages
        // wait at the broker, which drops them past its queue.
        if (ctx_.store_failure)
            out += fmt::format("# TYPE kgm_store_failing gauge\nkgm_store_failing {}\n",
                               ctx_.store_failure().empty() ? 0 : 1);
        if (ctx_.clock != nullptr) {
            if (const auto off = ctx_.clock->offset())
                out += fmt::format(
                    "# HELP kgm_clock_offset_seconds the sites' clocks minus the room's (the median over "
                    "the sites heard from in 10 min; > 0: the room is behind)\n"
                    "# TYPE kgm_clock_offset_seconds gauge\nkgm_clock_offset_seconds {:.3f}\n",
                    off->seconds);
        }
        if (ctx_.replay_requests)
            out += fmt::format("# TYPE kgm_replay_requests_total counter\nkgm_replay_requests_total {}\n",
                               ctx_.replay_requests());
        // By status: what the room has to act on (open, acknowledged) apart from history (closed).
        // Left out when the database does not answer (damaged, locked): the rest, kgm_store_failing
        // first, is what an alert rule needs then.
        try {
            std::string alerts = "# TYPE kgm_alerts gauge\n";
            for (const auto& [status, n] : ctx_.store.count_alerts_by_status())
                alerts += fmt::format("kgm_alerts{{status=\"{}\"}} {}\n", status, n);
            out += alerts;
        } catch (const sqlite::Error& e) {
            log_->warn("/metrics without kgm_alerts: {}", e.what());
        }
        if (ctx_.notification_metrics) out += ctx_.notification_metrics();
        return make_response(req, http::status::ok, std::move(out), "text/plain; version=0.0.4");
    }

    BrokerLinkState link_state() const {
        return ctx_.broker_link ? ctx_.broker_link() : BrokerLinkState{true, TimePoint{}, {}, std::nullopt};
    }

    ApiContext ctx_;
    std::shared_ptr<spdlog::logger> log_;
    // Failed sign-ins are logged per client address a few a minute (2 000 anonymous tries were
    // 2 000 lines in 0.2 s: the journal's rate limit then drops the room's own lines).
    kg::KeyedLogThrottle sign_in_warnings_{5};
    std::atomic<std::uint64_t> sign_ins_wrong_{0}, sign_ins_throttled_{0};
};

}  // namespace

WebHandler make_api(ApiContext ctx, std::shared_ptr<spdlog::logger> log) {
    auto api = std::make_shared<Api>(std::move(ctx), std::move(log));
    return [api](const Request& req, const Sender& from) { return api->handle(req, from); };
}

}  // namespace kg::monitor
