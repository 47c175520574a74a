#include "monitor/ingest.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <tuple>
#include <vector>

#include "common/backoff.hpp"
#include "common/json_depth.hpp"
#include "common/short_text.hpp"
#include "common/sqlite_db.hpp"
#include "monitor/event_cause.hpp"
#include "monitor/iso_time.hpp"

namespace kg::monitor {

using nlohmann::json;

namespace {

const std::regex kId("^[A-Za-z0-9_-]{1,64}$");
const std::regex kPart("^[A-Za-z0-9_-]{1,32}$");  // a roll-up part's id

const std::regex kEventId("^[A-Za-z0-9_-]{8,80}$");
const std::regex kStream("^[0-9a-f]{16}$");
// Sequence numbers stay within what every JSON reader holds exactly.
constexpr std::int64_t kMaxSeq = (std::int64_t{1} << 53) - 1;
// Above any update number a gateway can reach, so an `end` is always the newest message.
constexpr std::int64_t kEndSequence = std::int64_t{1} << 62;
// What a gateway sends is small: an event or a state is a few KiB, a snapshot some tens of KiB (a
// 4K frame a few MiB). Far larger is a broken or hostile site; storing it would let one site fill
// the room's disk a message at a time. Refused before it touches the store.
constexpr std::size_t kMaxJson = 256 * 1024;
constexpr std::size_t kMaxSnapshot = 8 * 1024 * 1024;
constexpr std::size_t kMaxJsonDepth = 32;
// A camera's or sensor's state is a few hundred bytes; all of a site's go out in every GET /api/sites.
constexpr std::size_t kMaxState = 16 * 1024;
// How far ahead of the room's clock a sensor minute may be (a site's clock a little fast).
constexpr auto kRollupAhead = std::chrono::hours(24);

std::vector<std::string> split(const std::string& topic) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
        const auto slash = topic.find('/', start);
        parts.push_back(topic.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;
}

bool is_time(const json& j) { return j.is_string() && parse_iso8601_utc(j.get<std::string>()).has_value(); }

// Empty when j[key] is the text `expected` (an id the topic names); else what is wrong. A site
// publishes only under its own topics (the broker's ACL says so too): the body must agree with them.
std::string names(const json& j, const char* key, const std::string& expected, const char* level) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return fmt::format("'{}' missing or not a text", key);
    if (it->get<std::string>() != expected)
        return fmt::format("'{}' is '{}', not '{}', the {} in the topic", key, it->get<std::string>(),
                           expected, level);
    return {};
}

// What is wrong with a clip report (docs/schemas/clip.schema.json) of event `event` of `site`;
// empty when nothing is.
std::string clip_report_error(const json& j, const std::string& site, const std::string& event) {
    if (auto e = names(j, "id", event, "event"); !e.empty()) return e;
    if (auto e = names(j, "site", site, "site"); !e.empty()) return e;
    const auto camera = j.find("camera");
    if (camera == j.end() || !camera->is_string() || !std::regex_match(camera->get<std::string>(), kId))
        return "'camera' missing or not an id";
    if (!j.contains("start_time") || !is_time(j["start_time"])) return "'start_time' missing or not a time";
    if (const auto error = j.find("error"); error != j.end()) {
        if (!error->is_string() || error->get<std::string>().empty()) return "'error' is not a text";
        return {};
    }
    const auto path = j.find("path");
    if (path == j.end() || !path->is_string() || path->get<std::string>().empty())
        return "neither 'error' nor 'path' (a text)";
    const auto duration = j.find("duration_s");
    if (duration == j.end() || !duration->is_number() || duration->get<double>() < 0)
        return "'duration_s' missing or not a number of seconds";
    const auto bytes = j.find("bytes");
    if (bytes == j.end() || !bytes->is_number_integer() || bytes->get<std::int64_t>() < 0)
        return "'bytes' missing or not a whole number";
    return {};
}

// The payload as JSON, or in `error` why it is not: nlohmann's reason, which says where
// ("parse error at line 1, column 7: ... last read: ..."), printable.
std::optional<json> parse_json(const std::string& payload, std::string& error) {
    try {
        return json::parse(payload);
    } catch (const json::exception& e) {
        std::string why = e.what();
        if (why.starts_with("[json.exception.")) why.erase(0, why.find(']') + 1);
        while (!why.empty() && why.front() == ' ') why.erase(0, 1);
        error = "not JSON: " + shortened_text(why, 200);
        return std::nullopt;
    }
}

// A printable start of a payload for a log line.
std::string excerpt(const std::string& payload) {
    std::string out;
    for (char c : payload.substr(0, 160)) out += (c >= 0x20 && c < 0x7f) ? c : '.';
    return payload.size() > 160 ? out + "..." : out;
}

// A whole number in [min, kMaxSeq] at j[key], or an error naming the key.
std::optional<std::int64_t> sequence_number(const json& j, const char* key, std::int64_t min,
                                            std::string& error) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer() ||
        (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxSeq)) ||
        it->get<std::int64_t>() < min || it->get<std::int64_t>() > kMaxSeq) {
        error = fmt::format("'{}' is {}, not a whole number from {} to {}", key,
                            it == j.end() ? "missing" : it->dump().substr(0, 40), min, kMaxSeq);
        return std::nullopt;
    }
    return it->get<std::int64_t>();
}

// The outbox's stream id at j["stream"], or an error naming it.
std::optional<std::string> stream_id(const json& j, std::string& error) {
    const auto it = j.find("stream");
    if (it == j.end() || !it->is_string() || !std::regex_match(it->get<std::string>(), kStream)) {
        error = fmt::format("'stream' is {}, not 16 lowercase hex digits",
                            it == j.end() ? "missing" : it->dump().substr(0, 40));
        return std::nullopt;
    }
    return it->get<std::string>();
}

}  // namespace

std::optional<Sequence> parse_sequence(const json& j, std::int64_t min_seq, std::string& error) {
    error.clear();
    const auto present = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
    if (!present("stream") && !present("seq")) return std::nullopt;
    const auto stream = stream_id(j, error);
    if (!stream) return std::nullopt;
    const auto seq = sequence_number(j, "seq", min_seq, error);
    if (!seq) return std::nullopt;
    return Sequence{*stream, *seq};
}

std::optional<std::int64_t> message_sequence(const std::string& event_id, const std::string& message_id,
                                             const std::string& state) {
    if (message_id.size() <= event_id.size() + 1 || message_id.compare(0, event_id.size(), event_id) != 0 ||
        message_id[event_id.size()] != ':')
        return std::nullopt;
    const std::string suffix = message_id.substr(event_id.size() + 1);
    if (suffix == "start") return state == "start" ? std::optional<std::int64_t>(0) : std::nullopt;
    if (suffix == "end") return state == "end" ? std::optional<std::int64_t>(kEndSequence) : std::nullopt;
    static const std::regex update("^update-([0-9]{1,15})$");
    std::smatch m;
    if (state != "update" || !std::regex_match(suffix, m, update)) return std::nullopt;
    const auto n = std::stoll(m[1]);
    if (n < 1) return std::nullopt;
    return n;
}

std::optional<EventMessage> parse_event(const std::string& topic_site, const std::string& payload,
                                        std::string& error) {
    const auto parsed = parse_json(payload, error);
    if (!parsed) return std::nullopt;
    const json& j = *parsed;
    if (!j.is_object()) {
        error = fmt::format("not a JSON object but {}", j.type_name());
        return std::nullopt;
    }
    EventMessage m;
    m.raw = payload;
    for (const auto* key : {"message_id", "id", "site", "check", "label", "state", "start_time", "time"}) {
        const auto it = j.find(key);
        if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
            error = fmt::format("'{}' missing or not a text", key);
            return std::nullopt;
        }
    }
    m.message_id = j["message_id"];
    m.id = j["id"];
    m.site = j["site"];
    m.check = j["check"];
    m.label = j["label"];
    m.state = j["state"];
    m.start_time = j["start_time"];
    m.time = j["time"];
    // Short, printable names: they go into every notification (a robot refuses a message over 4 KiB,
    // and one refused message held a duty group's queue for a day), the dashboard's filters and lists.
    // Shortened, not refused: an alert is never dropped for its name (a gateway of an older version
    // may have a long label; today's refuses one at load).
    for (auto [key, value, max] :
         {std::tuple{"check", &m.check, kMaxNameBytes}, std::tuple{"label", &m.label, kMaxNameBytes}}) {
        if (is_short_text(*value, max)) continue;
        *value = shortened_text(std::move(*value), max);
        m.cleaned.emplace_back(key);
    }
    if (!std::regex_match(m.id, kEventId)) {
        error = fmt::format("id '{}' is not an event id", m.id);
        return std::nullopt;
    }
    if (m.site != topic_site) {
        // A site publishes only under its own id (the broker's ACL says so too): never trust the body.
        error = fmt::format("site '{}' in the payload, '{}' in the topic", m.site, topic_site);
        return std::nullopt;
    }
    if (m.state != "start" && m.state != "update" && m.state != "end") {
        error = fmt::format("state '{}' is not start, update or end", m.state);
        return std::nullopt;
    }
    const auto seq = message_sequence(m.id, m.message_id, m.state);
    if (!seq) {
        error = fmt::format("message_id '{}' does not match id and state '{}'", m.message_id, m.state);
        return std::nullopt;
    }
    m.seq = *seq;
    const auto sev = j.find("severity");
    // Compared as the number sent: read as an int, 4294967297 was 1, an urgent alert.
    if (sev == j.end() || !sev->is_number_integer() ||
        (sev->is_number_unsigned() ? sev->get<std::uint64_t>() < 1 || sev->get<std::uint64_t>() > 3
                                   : sev->get<std::int64_t>() < 1 || sev->get<std::int64_t>() > 3)) {
        error = "severity missing or not 1, 2 or 3";
        return std::nullopt;
    }
    m.severity = sev->get<int>();
    if (!is_time(j["start_time"]) || !is_time(j["time"])) {
        error = "start_time or time is not an ISO 8601 UTC time";
        return std::nullopt;
    }
    if (const auto it = j.find("end_time"); it != j.end() && !it->is_null()) {
        if (!is_time(*it)) {
            error = "end_time is not an ISO 8601 UTC time";
            return std::nullopt;
        }
        m.end_time = it->get<std::string>();
    }
    if (const auto it = j.find("end_reason"); it != j.end() && !it->is_null() && m.state == "end") {
        if (!it->is_string() || it->get<std::string>().empty() || it->get<std::string>().size() > 64) {
            error = "end_reason is not a text of at most 64 characters";
            return std::nullopt;
        }
        m.end_reason = it->get<std::string>();
    }
    const auto camera = j.find("camera");
    const auto sensor = j.find("sensor");
    const bool has_camera = camera != j.end() && camera->is_string();
    const bool has_sensor = sensor != j.end() && sensor->is_string();
    if (has_camera == has_sensor) {
        error = "needs exactly one of camera and sensor";
        return std::nullopt;
    }
    m.source_kind = has_camera ? "camera" : "sensor";
    m.source = has_camera ? camera->get<std::string>() : sensor->get<std::string>();
    if (!std::regex_match(m.source, kId)) {
        error = fmt::format("{} id '{}' is not an id", m.source_kind, m.source);
        return std::nullopt;
    }
    for (auto [key, out] : {std::pair{"score", &m.score}, std::pair{"top_score", &m.top_score}}) {
        const auto it = j.find(key);
        if (it == j.end()) continue;
        if (!it->is_number()) {
            error = fmt::format("'{}' is {}, not a number", key, it->type_name());
            return std::nullopt;
        }
        *out = it->get<double>();
    }
    if (const auto it = j.find("value"); it != j.end() && it->is_number()) m.value = it->get<double>();
    if (const auto it = j.find("unit"); it != j.end() && it->is_string()) {
        m.unit = it->get<std::string>();
        if (!m.unit.empty() && !is_short_text(m.unit, kMaxUnitBytes)) {
            m.unit = shortened_text(std::move(m.unit), kMaxUnitBytes);
            m.cleaned.emplace_back("unit");
        }
    }
    const auto cause = read_event_cause(j);
    if (cause.cause) m.cause = cause.cause->dump(-1, ' ', false, json::error_handler_t::replace);
    if (cause.unusable)
        m.cleaned.emplace_back("cause (not an object of a kind and a text: left out, not stored)");
    const auto windows = read_windows_missed(j);
    m.windows_missed = windows.windows;
    if (windows.unusable)
        m.cleaned.emplace_back("windows_missed (not a whole number from 1: left out, not stored)");
    return m;
}

Ingest::Ingest(Store& store, std::string topic_prefix, std::shared_ptr<spdlog::logger> log, Notify notify,
               bool track_sequences, std::size_t warnings_per_minute)
    : store_(store),
      prefix_(std::move(topic_prefix)),
      log_(std::move(log)),
      notify_(std::move(notify)),
      track_sequences_(track_sequences),
      // Bounded, though a key is only a site the room knows: a room of thousands of sites still
      // keeps a small map.
      message_warnings_(warnings_per_minute, std::chrono::minutes(1), 4096),
      clear_lines_(warnings_per_minute, std::chrono::minutes(1), 4096),
      clock_(log_) {}

void Ingest::state_stored(Store::SourceStored stored, const std::string& topic, const std::string& payload,
                          const std::string& site, const char* what, const std::string& id) {
    switch (stored) {
        case Store::SourceStored::beyond_cap:
            return refuse(topic, payload,
                          fmt::format("a {} beyond the {} the site has", what, Store::kMaxSourcesPerSite));
        case Store::SourceStored::not_listed:
            log_->debug(
                "{}: state of {} {}, which its gateway no longer lists, ignored (kept retained by the broker "
                "from before)",
                site, what, id);
            return;
        case Store::SourceStored::stored:
            notify_({Change::Kind::site, site, {}});
            return;
    }
}

std::string Ingest::sender_of(const std::string& topic) {
    // A site the room knows, by the topic's site level; everyone else is one sender (a topic outside
    // the tree, a site never heard right: anyone with the broker's password can send a new name with
    // every message, and the known sites' lines must not wait behind theirs).
    if (topic.size() > prefix_.size() + 1 && topic.starts_with(prefix_) && topic[prefix_.size()] == '/') {
        auto site = topic.substr(prefix_.size() + 1);
        site.resize(std::min(site.find('/'), site.size()));
        try {
            if (std::regex_match(site, kId) && store_.has_site(site)) return site;
        } catch (const std::exception&) {
            // The database does not answer: one sender for all, the line still goes through.
        }
    }
    return "(no site the room knows)";
}

template <typename... Args>
void Ingest::warn_of_message(const std::string& topic, fmt::format_string<Args...> format, Args&&... args) {
    const auto sender = sender_of(topic);
    const auto verdict = message_warnings_.pass(sender);
    if (!verdict.log) return;
    auto line = fmt::format(format, std::forward<Args>(args)...);
    if (verdict.held > 0)
        line += fmt::format(" [{} more such line(s) of {} not logged before this one: at most {} a minute]",
                            verdict.held, sender, message_warnings_.burst());
    log_->warn("{}", line);
}

void Ingest::refuse(const std::string& topic, const std::string& payload, const std::string& why) {
    ++counters_.refused;
    // The reason may quote the payload's values: printable, or a line feed in one writes a log line
    // of the sender's own.
    warn_of_message(topic, "refused message on {}: {} (payload {} bytes: {})", topic,
                    shortened_text(why, 400), payload.size(), excerpt(payload));
}

void Ingest::retained_cleared(const std::string& topic, const std::string& site, const std::string& kind) {
    // What the room last heard stays: a clear deletes the broker's copy (a site decommissioned, its
    // topics tidied), it says nothing of the gateway. Refused, it was counted as a broken message and
    // logged as one ("not online or offline", "not JSON"), twice a clear.
    if (!clear_lines_.pass(sender_of(topic)).log) return;
    log_->info(
        "{}: its retained {} message was cleared on the broker (an empty message on {}): the room keeps "
        "what it last heard",
        site, kind, topic);
}

void Ingest::ignore_retired(const std::string& topic, const std::string& site) {
    {
        std::lock_guard lock(retired_mutex_);
        if (!retired_said_.insert(site).second) {
            log_->debug("{} ignored: {} was retired", topic, site);
            return;
        }
    }
    log_->info(
        "{} was retired by an operator: what the broker kept of it ({}, sent again at each connection, and "
        "its last will) is ignored; a message of its own brings it back as a new site (clear a retained "
        "topic with mosquitto_pub -r -n -t <topic>)",
        site, topic);
}

void Ingest::handle(const std::string& topic, const std::string& payload, bool retained, TimePoint now) {
    ++counters_.received;
    Backoff wait(std::chrono::milliseconds(500), std::chrono::seconds(10));
    std::optional<std::chrono::steady_clock::time_point> logged;
    for (;;) {
        try {
            route(topic, payload, retained, now);
            if (store_failing_.load(std::memory_order_relaxed)) {
                store_failing_ = false;
                log_->info("the database takes messages again (message on {} stored)", topic);
            }
            return;
        } catch (const sqlite::Error& e) {
            // A damaged file is not this message's fault either: refused, every message after it
            // would be dropped too. Held, they wait at the broker until the file is mended.
            if (!e.transient() && !e.corrupt()) {
                store_failing_ = false;  // the database answered: this message is what it refused
                return refuse(topic, payload, e.what());
            }
            ++counters_.store_retries;
            const auto why = e.corrupt()
                                 ? fmt::format(
                                       "the database file is damaged ({}): stop the monitor and recover it "
                                       "(docs/monitor.md, \"A damaged database\")",
                                       e.what())
                                 : std::string(e.what());
            {
                std::lock_guard lock(failure_mutex_);
                store_failure_ = why;
            }
            store_failing_ = true;
            const auto steady = std::chrono::steady_clock::now();
            if (!logged || steady - *logged >= std::chrono::minutes(1)) {
                log_->error("message on {} not stored yet (retrying; the broker holds what follows): {}",
                            topic, why);
                logged = steady;
            }
            std::unique_lock lock(stop_mutex_);
            if (stop_cv_.wait_for(lock, wait.next(), [this] { return stopping_; })) {
                ++counters_.refused;
                log_->error("message on {} lost: the monitor stopped while its database failed ({})", topic,
                            e.what());
                return;
            }
        } catch (const std::exception& e) {
            // A payload field of an unexpected type.
            store_failing_ = false;
            return refuse(topic, payload, e.what());
        }
    }
}

std::string Ingest::store_failure() const {
    if (!store_failing_.load()) return {};
    std::lock_guard lock(failure_mutex_);
    return store_failure_;
}

void Ingest::stop() {
    {
        std::lock_guard lock(stop_mutex_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
}

void Ingest::route(const std::string& topic, const std::string& payload, bool retained, TimePoint now) {
    // The prefix may be more than one level (district-7/kitchen): parts[0] stands for all of it.
    if (!topic.starts_with(prefix_) || topic.size() <= prefix_.size() + 1 || topic[prefix_.size()] != '/')
        return refuse(topic, payload, "not a topic of the site tree");
    auto parts = split(topic.substr(prefix_.size() + 1));
    parts.insert(parts.begin(), prefix_);
    if (parts.size() < 3) return refuse(topic, payload, "not a topic of the site tree");
    const std::string& site = parts[1];
    if (!std::regex_match(site, kId)) return refuse(topic, payload, "the site level is not an id");
    const std::string& kind = parts[2];
    const bool snapshot = kind == "events" && parts.size() == 5 && parts[4] == "snapshot";
    if (const auto max = snapshot ? kMaxSnapshot : kMaxJson; payload.size() > max)
        return refuse(topic, payload,
                      fmt::format("too large: {} bytes, at most {} KiB {}", payload.size(), max / 1024,
                                  snapshot ? "for a snapshot" : "for a JSON message"));

    // A live message is the site's heartbeat; a retained one is only the broker's memory of it. A
    // refused message beats for a site the room knows (its gateway is there, if broken), but does
    // not make one: a garbage topic left a site in the list for good. Nor does `offline`: the
    // broker publishes it for a gateway that is gone (its last will), and counted, "last heard"
    // showed when the broker noticed, not the gateway's last word (the 55th session's review).
    const bool will = kind == "availability" && payload == "offline";
    // An empty message on a topic that is kept retained clears it (the broker's way to delete a
    // retained message): whoever tidied the broker spoke, not the site. No heartbeat, and no site.
    const bool clear =
        payload.empty() &&
        (((kind == "availability" || kind == "gateway") && parts.size() == 3) ||
         ((kind == "cameras" || kind == "sensors") && parts.size() == 5 && parts[4] == "state"));
    // What the broker kept of a site an operator retired (its retained messages, sent again at each
    // subscription, and its last will) would bring it back at every connection: its own next
    // message does.
    if ((retained || will) && !clear && store_.retired(site)) return ignore_retired(topic, site);
    const auto refused = counters_.refused.load();
    route_site(topic, parts, payload, retained, now);
    if (!retained && !will && !clear && (counters_.refused.load() == refused || store_.has_site(site)))
        store_.site_seen(site, now);
}

void Ingest::route_site(const std::string& topic, const std::vector<std::string>& parts,
                        const std::string& payload, bool retained, TimePoint now) {
    const std::string& site = parts[1];
    const std::string& kind = parts[2];
    const bool snapshot = kind == "events" && parts.size() == 5 && parts[4] == "snapshot";
    if (payload.empty() && (kind == "availability" || kind == "gateway") && parts.size() == 3)
        return retained_cleared(topic, site, kind);
    if (kind == "availability" && parts.size() == 3) {
        if (payload != "online" && payload != "offline")
            return refuse(topic, payload, "not online or offline");
        store_.set_availability(site, payload, now);
        notify_({Change::Kind::site, site, {}});
        return;
    }
    if (kind == "decisions") return;  // our own (or another instance's) decisions, if subscribed

    if (snapshot) {
        if (!std::regex_match(parts[3], kEventId))
            return refuse(topic, payload, "the event level is not an id");
        if (payload.size() < 4 || static_cast<unsigned char>(payload[0]) != 0xff ||
            static_cast<unsigned char>(payload[1]) != 0xd8)
            return refuse(topic, payload, "not a JPEG");
        if (!store_.add_snapshot(site, parts[3], payload, now))
            return refuse(topic, payload, "the event belongs to another site");
        notify_({Change::Kind::alert, site, parts[3]});
        return;
    }

    // An empty retained message clears a state topic (`mosquitto_pub -r -n`): the camera or sensor
    // is gone.
    if (payload.empty() && (kind == "cameras" || kind == "sensors") && parts.size() == 5 &&
        parts[4] == "state" && std::regex_match(parts[3], kId)) {
        const bool had =
            kind == "cameras" ? store_.forget_camera(site, parts[3]) : store_.forget_sensor(site, parts[3]);
        if (had) {
            log_->info("{}: {} {} cleared from the broker: forgotten", site,
                       kind == "cameras" ? "camera" : "sensor", parts[3]);
            notify_({Change::Kind::site, site, {}});
        }
        return;
    }
    // A gateway's messages nest a few levels. Far deeper is a broken or hostile site, and storing it
    // would crash the room each time the broker hands it back retained (common/json_depth.hpp).
    if (json_nested_deeper_than(payload, kMaxJsonDepth))
        return refuse(topic, payload, fmt::format("nested deeper than {} levels", kMaxJsonDepth));
    std::string error;
    const auto parsed = parse_json(payload, error);
    if (!parsed) return refuse(topic, payload, error);
    const json& j = *parsed;
    if (!j.is_object()) return refuse(topic, payload, fmt::format("not a JSON object but {}", j.type_name()));

    if (kind == "events" && parts.size() == 3) return route_event(topic, site, payload, j, now);
    if (kind == "events" && parts.size() == 5 && parts[4] == "clip") {
        const auto seq = sequence_of(topic, j, 1);
        if (!std::regex_match(parts[3], kEventId))
            return refuse(topic, payload, "the event level is not an id");
        if (const auto error = clip_report_error(j, site, parts[3]); !error.empty()) {
            // Delivered all the same, as a refused event is: asking again would bring the same one.
            if (seq && store_.has_site(site))
                report(site, seq->stream, store_.track_received(site, *seq, now), now);
            return refuse(topic, payload, error);
        }
        const auto clip = store_.set_clip(site, parts[3], j, now, seq);
        if (clip.pending)
            log_->info("clip report for event {} kept until its alert arrives (its start is on its way)",
                       parts[3]);
        else if (!clip.attached)
            warn_of_message(
                topic, "clip report for event {} not kept: the event belongs to another site or was deleted",
                parts[3]);
        if (clip.evicted)
            log_->warn("{}: more than {} clip reports wait for their alert: the {} oldest dropped", site,
                       Store::kMaxPendingClips, clip.evicted);
        notify_({Change::Kind::alert, site, parts[3]});
        if (seq) report(site, seq->stream, clip.track, now);
        return;
    }
    // The states and roll-ups name their site (and camera or sensor) as their topic does.
    if (kind == "gateway" || kind == "cameras" || kind == "sensors") {
        if (auto e = names(j, "site", site, "site"); !e.empty()) return refuse(topic, payload, e);
        if (kind != "gateway" && parts.size() == 5) {
            if (auto e = names(j, kind == "cameras" ? "camera" : "sensor", parts[3],
                               kind == "cameras" ? "camera" : "sensor");
                !e.empty())
                return refuse(topic, payload, e);
        }
    }
    // A live state was stamped by its gateway a moment ago: the room's clock is checked against it
    // (a retained one may be hours old).
    if (!retained && kind != "gateway" && parts.size() == 5 && parts[4] == "state") {
        if (const auto t = j.find("time"); t != j.end() && t->is_string()) {
            if (const auto sent = parse_iso8601_utc(t->get<std::string>())) clock_.heard(site, *sent, now);
        }
    }
    if (kind == "gateway" && parts.size() == 3) {
        for (const auto* key : {"version", "started_at", "reloaded_at"}) {
            if (const auto it = j.find(key); it != j.end() && !it->is_string())
                return refuse(topic, payload, fmt::format("'{}' is {}, not a text", key, it->type_name()));
        }
        // Its lists name the site's cameras and sensors, and the store matches states against
        // their ids: an entry that is not an object with an id (a camera given as "cam1") made
        // every later state of that site fail in the database until the next good message.
        for (const auto* list : {"cameras", "sensors"}) {
            const auto it = j.find(list);
            if (it == j.end() || it->is_null()) continue;
            if (!it->is_array())
                return refuse(topic, payload, fmt::format("'{}' is {}, not a list", list, it->type_name()));
            for (std::size_t i = 0; i < it->size(); ++i) {
                const auto& entry = (*it)[i];
                const auto id = entry.is_object() ? entry.find("id") : entry.end();
                if (!entry.is_object() || id == entry.end() || !id->is_string() ||
                    !std::regex_match(id->get_ref<const std::string&>(), kId))
                    return refuse(topic, payload,
                                  fmt::format("'{}'[{}] is not an object with an 'id' (1 to 64 letters, "
                                              "digits, '-' or '_')",
                                              list, i));
            }
        }
        // Its seq: everything up to it was acknowledged by the broker.
        auto seq = sequence_of(topic, j, 0);
        if (const auto it = j.find("stream_started"); it != j.end() && !it->is_null()) {
            const auto started = it->is_string() ? parse_iso8601_utc(it->get<std::string>()) : std::nullopt;
            if (!started)  // the rest of the message still holds: only this is not taken
                warn_of_message(topic,
                                "'stream_started' on {} ignored (the message is kept): {} is not a time",
                                topic, it->dump().substr(0, 40));
            else if (seq)
                seq->started = started;
        }
        // The run is the configuration's: since a reload (`reloaded_at`), else since the start.
        for (const auto* key : {"reloaded_at", "started_at"}) {
            const auto it = j.find(key);
            if (!seq || it == j.end() || !it->is_string()) continue;
            seq->run_started = parse_iso8601_utc(it->get<std::string>());  // not a time: the next
            if (seq->run_started) break;
        }
        const auto stored = store_.set_gateway_info(site, j, now, seq);
        if (!stored.removed.empty())
            log_->info("{}: {} no longer in its gateway's list: forgotten", site,
                       fmt::join(stored.removed, ", "));
        notify_({Change::Kind::site, site, {}});
        if (seq) report(site, seq->stream, stored.track, now);
        return;
    }
    if (kind == "lost" && parts.size() == 3) return route_lost(topic, site, payload, j, now);
    if (kind == "cameras" && parts.size() == 5 && parts[4] == "state") {
        if (!std::regex_match(parts[3], kId)) return refuse(topic, payload, "the camera level is not an id");
        if (payload.size() > kMaxState)
            return refuse(topic, payload, fmt::format("a state over {} KiB", kMaxState >> 10));
        return state_stored(store_.set_camera_state(site, parts[3], j), topic, payload, site, "camera",
                            parts[3]);
    }
    if (kind == "sensors" && parts.size() == 5 && (parts[4] == "state" || parts[4] == "rollup")) {
        if (!std::regex_match(parts[3], kId)) return refuse(topic, payload, "the sensor level is not an id");
        if (parts[4] == "state") {
            if (payload.size() > kMaxState)
                return refuse(topic, payload, fmt::format("a state over {} KiB", kMaxState >> 10));
            return state_stored(store_.set_sensor_state(site, parts[3], j), topic, payload, site, "sensor",
                                parts[3]);
        }
        for (const auto* key : {"min", "mean", "max"})
            if (!j.contains(key) || !j[key].is_number())
                return refuse(topic, payload, fmt::format("'{}' is not a number", key));
        if (!j.contains("minute") || !is_time(j["minute"]))
            return refuse(topic, payload, "'minute' is not a time");
        // A site whose clock runs years ahead would leave minutes that retention, counting from
        // them, never deletes, and that every later curve of the sensor would be drawn to. When
        // most sites agree that the room's own clock is behind (NTP down on its server), their
        // clock is the measure: else every site's roll-ups would be refused, and lost, until
        // someone set the room's clock right.
        const auto measure = clock_.later_of(now);
        if (*parse_iso8601_utc(j["minute"].get<std::string>()) > measure + kRollupAhead)
            return refuse(topic, payload,
                          measure == now ? "'minute' is more than a day ahead of the room's clock: is the "
                                           "site's clock right?"
                                         : "'minute' is more than a day ahead of the clocks of most sites: "
                                           "is the site's clock right?");
        if (!j.contains("count") || !j["count"].is_number_integer())
            return refuse(topic, payload, "'count' is not an integer");
        if (j.contains("partial") && !j["partial"].is_boolean())
            return refuse(topic, payload, "'partial' is not true or false");
        // Kept (see Store::add_rollup) and compared inside a comma-separated list.
        if (j.contains("part") &&
            (!j["part"].is_string() || !std::regex_match(j["part"].get<std::string>(), kPart)))
            return refuse(topic, payload, "'part' is not an id (1 to 32 letters, digits, '-' or '_')");
        // Stored as the room writes a minute: the row's key and the order retention and the curves
        // read it in are that text, and `...T06:00:00Z` beside `...T06:00:00.000Z` was two rows
        // of one minute.
        json rollup = j;
        rollup["minute"] = iso8601_utc(
            std::chrono::floor<std::chrono::minutes>(*parse_iso8601_utc(j["minute"].get<std::string>())));
        if (!store_.add_rollup(site, parts[3], rollup))
            return refuse(topic, payload,
                          fmt::format("roll-ups of a sensor beyond the {} the site has them of",
                                      Store::kMaxSourcesPerSite));
        notify_({Change::Kind::rollup, site, {}});
        return;
    }
    refuse(topic, payload, "unknown topic");
}

void Ingest::route_event(const std::string& topic, const std::string& site, const std::string& payload,
                         const json& j, TimePoint now) {
    const auto seq = sequence_of(topic, j, 1);
    std::string error;
    const auto m = parse_event(site, payload, error);
    if (!m) {
        // Refused for its body, it was delivered all the same: asking for it again would bring the
        // same message.
        // Not for a site the room does not know: that would make one of a refused message.
        if (seq && store_.has_site(site))
            report(site, seq->stream, store_.track_received(site, *seq, now), now);
        return refuse(topic, payload, error);
    }
    if (!m->cleaned.empty())
        log_->warn(
            "{}: {} of alert {} stored shortened or with its control characters replaced (the room "
            "takes at most {} bytes of printable text, {} for a unit): {}",
            site, fmt::join(m->cleaned, ", "), m->id, kMaxNameBytes, kMaxUnitBytes, excerpt(payload));
    const auto stored = store_.add_event(*m, now, seq);
    if (seq) report(site, seq->stream, stored.track, now);
    if (stored.track.retired_stream && !stored.track.ended_alerts.empty())
        log_->warn("{}: alert {} first seen in a late message of replaced stream {}: ended as '{}'", site,
                   m->id, seq->stream, kEndOutboxReplaced);
    switch (stored.outcome) {
        case IngestOutcome::created:
            ++counters_.created;
            break;
        case IngestOutcome::updated:
            ++counters_.updated;
            break;
        case IngestOutcome::duplicate:
            ++counters_.duplicates;
            log_->debug("duplicate {} ignored", m->message_id);
            return;
        case IngestOutcome::stale:
            ++counters_.stale;
            log_->debug("{} is older than what is shown: history only", m->message_id);
            return;
        case IngestOutcome::rejected:
            return refuse(topic, payload, fmt::format("event {} belongs to another site", m->id));
        case IngestOutcome::expired:
            ++counters_.expired;
            log_->info("{} ignored: its alert (started {}) was closed and deleted by retention",
                       m->message_id, m->start_time);
            return;
    }
    log_->info("{} {} {}/{} {} {} (severity {})", site, m->state, m->check, m->label, m->source_kind,
               m->source, m->severity);
    notify_({Change::Kind::alert, site, m->id});
}

std::optional<Sequence> Ingest::sequence_of(const std::string& topic, const json& j, std::int64_t min_seq) {
    if (!track_sequences_) return std::nullopt;
    std::string error;
    auto s = parse_sequence(j, min_seq, error);
    if (!s && !error.empty())
        warn_of_message(topic, "sequence number on {} ignored (the message is kept): {}", topic, error);
    return s;
}

void Ingest::report(const std::string& site, const std::string& stream, const TrackResult& r, TimePoint now) {
    if (r.kind == TrackResult::Kind::started) {
        if (!r.renamed_from.empty()) {
            log_->warn(
                "{0}: following stream {1} from the number first heard: the room follows it as site {2} "
                "too (the gateway's site.id was {2}: what it sent before stays there, replays of it "
                "included; retire {2} once its alerts are dealt with)",
                site, stream, r.renamed_from);
        } else if (r.replaced_stream.empty()) {
            log_->info(
                "{}: following stream {}{}", site, stream,
                r.from_first ? " from its first number (it began after the room started watching)" : "");
        } else {
            // A new outbox, or one that came back: the one it takes over from is no longer followed.
            counters_.lost_numbers += static_cast<std::uint64_t>(r.replaced_missing);
            log_->warn("{}: {}; stream {} is no longer followed{}", site,
                       r.reinstated
                           ? fmt::format("stream {} is back (the outbox it replaced returned)", stream)
                           : fmt::format("new stream {} (its outbox was replaced)", stream),
                       r.replaced_stream,
                       r.replaced_missing
                           ? fmt::format(" and its {} missing numbers will never come: counted as lost",
                                         r.replaced_missing)
                           : "");
            if (!r.ended_alerts.empty())
                log_->warn("{}: {} alert(s) it left open ended as '{}': their ends went with that outbox",
                           site, r.ended_alerts.size(), kEndOutboxReplaced);
            for (const auto& id : r.ended_alerts) notify_({Change::Kind::alert, site, id});
        }
    }
    if (r.kind == TrackResult::Kind::tracked && r.from_first)
        log_->info(
            "{}: stream {} began after the room started following sites: its numbers from 1, taken "
            "as delivered before, are awaited",
            site, stream);
    if (r.given_up) {
        counters_.lost_numbers += static_cast<std::uint64_t>(r.given_up->count);
        log_->warn(
            "{} stream {}: more than {} numbers missing: {}-{} ({} numbers) no longer asked for, counted "
            "as lost",
            site, stream, StreamTrack::kMaxMissing, r.given_up->from, r.given_up->to, r.given_up->count);
    }
    if (r.found) {
        ++counters_.found_numbers;
        // One line a minute per site: an operator who requeues thousands of dead messages must not
        // get thousands of lines.
        std::lock_guard lock(found_mutex_);
        auto& f = found_logs_[site];
        if (f.last && now - *f.last < std::chrono::minutes(1)) {
            ++f.unlogged;
        } else {
            log_->info(
                "{} stream {}: number {}, counted lost, arrived after all: no longer counted as lost{}", site,
                stream, *r.found,
                f.unlogged ? fmt::format(" (and {} more since the last such line)", f.unlogged) : "");
            f = {now, 0};
        }
    }
    if (r.changed) notify_({Change::Kind::site, site, {}});
}

void Ingest::route_lost(const std::string& topic, const std::string& site, const std::string& payload,
                        const json& j, TimePoint now) {
    // The gateway's answer to a replay request: these numbers will never come.
    const auto text = [&](const char* key) -> std::optional<std::string> {
        const auto it = j.find(key);
        if (it == j.end() || !it->is_string()) return std::nullopt;
        return it->get<std::string>();
    };
    if (text("site") != site)
        return refuse(topic, payload, fmt::format("'site' is not '{}', the site in the topic", site));
    std::string error;
    const auto stream = stream_id(j, error);
    if (!stream) return refuse(topic, payload, error);
    const auto from = sequence_number(j, "from", 1, error);
    const auto to = from ? sequence_number(j, "to", 1, error) : std::nullopt;
    if (!from || !to) return refuse(topic, payload, error);
    if (*from > *to) return refuse(topic, payload, fmt::format("'from' {} is after 'to' {}", *from, *to));
    const auto reason = text("reason");
    if (!reason || reason->empty()) return refuse(topic, payload, "'reason' missing or not a text");
    const std::string request = text("request_id").value_or("none");
    if (!track_sequences_) {
        log_->warn("{} stream {}: {}-{} lost ({}, request {})", site, *stream, *from, *to, excerpt(*reason),
                   excerpt(request));
        return;
    }
    const auto r = store_.track_lost(site, *stream, *from, *to, now);
    if (r.kind == TrackResult::Kind::ignored) {
        log_->warn("{} stream {}: {}-{} lost ({}, request {}); not the stream the room follows for this site",
                   site, *stream, *from, *to, excerpt(*reason), excerpt(request));
        return;
    }
    counters_.lost_numbers += static_cast<std::uint64_t>(r.lost);
    log_->warn("{} stream {}: {}-{} lost ({}, request {}): {} numbers no longer asked for", site, *stream,
               *from, *to, excerpt(*reason), excerpt(request), r.lost);
    report(site, *stream, r, now);
}

}  // namespace kg::monitor
