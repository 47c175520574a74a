#include "app/event_log.hpp"

#include <algorithm>
#include <utility>

#include "common/iso_time.hpp"
#include "publish/payloads.hpp"

namespace kg::app {
namespace {

std::string condition_of(const std::string& source, const std::string& check, const std::string& label,
                         const std::string& zone) {
    return source + '\x1f' + check + '\x1f' + label + '\x1f' + zone;
}

std::string condition_of(const events::Event& e) { return condition_of(e.source, e.check, e.label, e.zone); }

}  // namespace

EventLog::EventLog(events::EventSink& next, std::string site, std::size_t keep)
    : next_(next), site_(std::move(site)), keep_(keep) {}

void EventLog::submit(const events::Event& event) {
    {
        std::lock_guard lock(mutex_);
        recent_.push_front(nlohmann::json::parse(publish::event_payload(event, site_)));
        if (recent_.size() > keep_) recent_.pop_back();
        ++counts_[{event.check, events::to_string(event.state)}];
        if (event.state == events::EventState::start) {
            open_[event.id] = event.check;
            if (!event.evidence.clip.empty()) {
                pending_clips_.insert(event.id);
                // Ids begin with their time in hex: the first is the oldest. A report never made
                // (the run ended first) does not hold its id for ever.
                if (pending_clips_.size() > keep_) pending_clips_.erase(pending_clips_.begin());
            }
            auto condition = condition_of(event);
            // The same condition the reload's stop ended, raised again: one alert.
            std::erase_if(day_, [&](const DayEntry& d) { return d.stopped && d.condition == condition; });
            day_.push_back({event.time, event.check, event.id, false, std::move(condition)});
        } else if (event.state == events::EventState::end) {
            open_.erase(event.id);
            if (event.end_reason.empty()) {
                // Resolved: the condition cleared. An end the gateway forced (stopped, restarted,
                // camera offline, check failing, picture unusable) is not a resolution.
                day_.push_back({event.time, event.check, event.id, true, condition_of(event)});
            } else if (event.end_reason == events::kEndStopped) {
                for (auto& d : day_) {
                    if (d.event_id == event.id && !d.resolved) d.stopped = true;
                }
            }
        }
        // By each entry's own time, not from the front: an entry stamped while the clock ran ahead
        // (then set back) held every later one behind it, and the day grew by each event until
        // the clock caught up (the 53rd session's review: 335 bytes an event). Entries two days
        // ahead of this event go too: the clock that stamped them was wrong.
        std::erase_if(day_, [&](const DayEntry& d) {
            return event.time - d.time > std::chrono::hours(48) ||
                   d.time - event.time > std::chrono::hours(48);
        });
    }
    next_.submit(event);
}

void EventLog::submit_snapshot(const events::Event& event, std::string jpeg) {
    next_.submit_snapshot(event, std::move(jpeg));
}

void EventLog::submit_clip(const events::ClipReport& clip) {
    {
        std::lock_guard lock(mutex_);
        pending_clips_.erase(clip.event_id);
        if (clip.error.empty()) {
            clips_[clip.event_id] = clip.path;
            if (clips_.size() > keep_) clips_.erase(clips_.begin());
        }
    }
    next_.submit_clip(clip);
}

nlohmann::json EventLog::recent(std::size_t limit) const {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : recent_) {
        if (out.size() >= limit) break;
        out.push_back(e);
    }
    return out;
}

std::vector<nlohmann::json> EventLog::messages_of(const std::string& event_id) const {
    std::lock_guard lock(mutex_);
    std::vector<nlohmann::json> out;
    for (const auto& e : recent_) {
        if (e.value("id", "") == event_id) out.push_back(e);
    }
    return out;
}

bool EventLog::clip_pending(const std::string& event_id) const {
    std::lock_guard lock(mutex_);
    return pending_clips_.count(event_id) > 0;
}

std::optional<std::string> EventLog::evidence(const std::string& event_id, const std::string& kind) const {
    std::lock_guard lock(mutex_);
    if (kind == "clip") {
        auto it = clips_.find(event_id);
        return it == clips_.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    for (const auto& e : recent_) {
        if (e.value("id", "") != event_id) continue;
        const auto& v = e["evidence"][kind];
        if (v.is_string()) return v.get<std::string>();
    }
    return std::nullopt;
}

std::map<std::pair<std::string, std::string>, std::uint64_t> EventLog::counts() const {
    std::lock_guard lock(mutex_);
    return counts_;
}

}  // namespace kg::app

namespace kg::app {

std::map<std::string, EventLog::DayCount> EventLog::day_summary(
    const std::function<std::string(TimePoint)>& date_of, TimePoint now) const {
    std::lock_guard lock(mutex_);
    std::map<std::string, DayCount> out;
    for (const auto& [id, check] : open_) ++out[check].open;
    const auto today = date_of(now);
    for (const auto& d : day_) {
        if (now - d.time > std::chrono::hours(26) || date_of(d.time) != today) continue;
        ++(d.resolved ? out[d.check].resolved : out[d.check].raised);
    }
    return out;
}

EventLog::Day EventLog::take_day() {
    std::lock_guard lock(mutex_);
    return std::exchange(day_, {});
}

void EventLog::adopt_day(Day earlier) {
    std::lock_guard lock(mutex_);
    earlier.insert(earlier.end(), day_.begin(), day_.end());
    day_ = std::move(earlier);
}

EventLog::Open EventLog::take_open() {
    std::lock_guard lock(mutex_);
    return std::exchange(open_, {});
}

void EventLog::adopt_open(Open earlier) {
    std::lock_guard lock(mutex_);
    open_.merge(earlier);
}

void EventLog::adopt_history(const std::vector<std::string>& payloads, bool with_day) {
    std::lock_guard lock(mutex_);
    std::map<std::string, std::size_t> raised;  // event id -> its raise in day_, while not ended
    for (const auto& payload : payloads) {
        auto j = nlohmann::json::parse(payload, nullptr, false);
        if (!j.is_object() || !j.contains("id") || !j.contains("state") || !j.contains("check")) continue;
        try {
            j.erase("stream");  // the outbox's numbering; this run's own entries have none
            j.erase("seq");
            const auto time = parse_iso8601_utc(j.value("time", ""));
            const std::string id = j.at("id").get<std::string>(), state = j.at("state").get<std::string>();
            const std::string check = j.at("check").get<std::string>();
            if (with_day && time) {
                const std::string source =
                    j.contains("sensor") ? j.value("sensor", "") : j.value("camera", "");
                const auto zone =
                    j.value("zone", nlohmann::json()).is_string() ? j["zone"].get<std::string>() : "";
                auto condition = condition_of(source, check, j.value("label", ""), zone);
                if (state == "start") {
                    raised[id] = day_.size();
                    day_.push_back({*time, check, id, false, std::move(condition), true});
                } else if (state == "end") {
                    const auto reason = j.value("end_reason", "");
                    if (const auto it = raised.find(id); it != raised.end()) {
                        // Only a stop or a crash leaves a raise the next run's raise replaces; a
                        // cleared condition or another forced end (camera offline) keeps it counted.
                        day_[it->second].stopped =
                            reason == events::kEndStopped || reason == events::kEndRestarted;
                        raised.erase(it);
                    }
                    if (reason == "cleared") day_.push_back({*time, check, id, true, std::move(condition)});
                }
            }
            recent_.push_front(std::move(j));
            if (recent_.size() > keep_) recent_.pop_back();
        } catch (const nlohmann::json::exception&) {
            continue;  // a field of another type: not an event message this gateway wrote
        }
    }
    if (!day_.empty()) {
        const auto newest = day_.back().time;
        while (!day_.empty() && newest - day_.front().time > std::chrono::hours(48)) day_.pop_front();
    }
}

}  // namespace kg::app
