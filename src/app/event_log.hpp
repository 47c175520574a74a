#pragma once
// Keeps the recent event messages (as published) and counts them, for the local API and the
// metrics, then hands everything on to the next sink (the outbox) unchanged.

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "events/event.hpp"

namespace kg::app {

class EventLog final : public events::EventSink {
public:
    static constexpr std::size_t kKeep = 500;
    EventLog(events::EventSink& next, std::string site, std::size_t keep = kKeep);

    void submit(const events::Event& event) override;
    void submit_snapshot(const events::Event& event, std::string jpeg) override;
    void submit_clip(const events::ClipReport& clip) override;

    nlohmann::json recent(std::size_t limit) const;  // newest first
    // The messages of one event it keeps, newest first.
    std::vector<nlohmann::json> messages_of(const std::string& event_id) const;
    // A start of this run named a clip, and its report has not come yet.
    bool clip_pending(const std::string& event_id) const;
    // Relative evidence path of `kind` ("snapshot", "snapshot_end", "clip") for an event, if known.
    std::optional<std::string> evidence(const std::string& event_id, const std::string& kind) const;
    std::map<std::pair<std::string, std::string>, std::uint64_t> counts() const;  // (check, state) -> n

    // The parents' summary, by check: events open now, and raised / resolved on the local day
    // `date_of(now)` (date_of maps a time to the site's local date).
    struct DayCount {
        std::uint64_t open = 0, raised = 0, resolved = 0;
    };
    std::map<std::string, DayCount> day_summary(const std::function<std::string(TimePoint)>& date_of,
                                                TimePoint now) const;

    // The last two days' raises and resolutions, handed from a run to the next at a reload: the
    // page said "nothing today" after every reload. A raise whose event the stop ended stays
    // counted until the next run raises the same condition again (same source, check, label and
    // zone), which then counts instead of it: one alert, not two. One that is not raised again (a
    // missed disinfection cycle, raised when its window closed; a condition gone meanwhile) stays.
    struct DayEntry {
        TimePoint time;
        std::string check, event_id;
        bool resolved = false;
        std::string condition;  // source, check, label, zone
        bool stopped = false;   // a raise the stop of a reload ended
    };
    using Day = std::deque<DayEntry>;
    Day take_day();
    void adopt_day(Day earlier);
    // The events open now (id -> check), handed over at a reload with the sensors' open events
    // (SensorHub::stop): the parents' "open now" went on counting them, and their ends, if the
    // next run sends them, take them out.
    using Open = std::map<std::string, std::string>;
    Open take_open();
    void adopt_open(Open earlier);

    // The event messages the runs before this one published (their payloads, oldest first, from the
    // outbox): the local API lists them, and with `with_day` (a start, not a reload, which hands
    // the day over itself) the parents' figures count today's raises and resolutions from them, so
    // a restart at noon no longer says "nothing today". A raise the history does not end, or ended
    // by a stop, counts as one the stop ended (see above). Payloads that are not an event's are
    // skipped. Call before this run submits anything.
    void adopt_history(const std::vector<std::string>& payloads, bool with_day);

private:
    events::EventSink& next_;
    std::string site_;
    std::size_t keep_;
    mutable std::mutex mutex_;
    std::deque<nlohmann::json> recent_;
    std::map<std::string, std::string> clips_;  // event id -> written clip path
    std::set<std::string> pending_clips_;       // ids whose start named a clip not yet reported
    std::map<std::pair<std::string, std::string>, std::uint64_t> counts_;
    std::map<std::string, std::string> open_;  // event id -> check
    Day day_;                                  // last 2 days at most
};

}  // namespace kg::app
