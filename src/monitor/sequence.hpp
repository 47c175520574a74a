#pragma once
// What the room knows of one site's numbered stream (docs/mqtt.md, "Sequence numbers and replay"):
// every number up to `mark` is received or lost for good, numbers up to `top` were sent, and the
// numbers in between that have not arrived are kept as missing ranges. Pure state: the store loads
// it, applies one message and writes it back, so instances sharing a database track one stream.
//
// Missing ranges rather than a set of received numbers: a site that jumps from 10 to 10^12 is one
// range, not a million entries, and the cap (kMaxMissing) bounds both memory and replay requests.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"

namespace kg::monitor {

// A stream id and a number as a message carries them.
struct Sequence {
    std::string stream;
    std::int64_t seq = 0;
    // When the stream began, on the gateway's clock (its `gateway` message says so; events do not).
    std::optional<TimePoint> started = std::nullopt;
    // When the run of the gateway that sent it began (its `gateway` message's `started_at`).
    std::optional<TimePoint> run_started = std::nullopt;
};

// Numbers from..to (inclusive) not received, noticed missing at `since`, last asked for at `asked_at`.
struct MissingRange {
    std::int64_t from = 0, to = 0;
    TimePoint since;
    std::optional<TimePoint> asked_at;
    std::int64_t size() const { return to - from + 1; }
    bool operator==(const MissingRange&) const = default;
};

// Numbers from..to (inclusive), as counted lost.
struct NumberRange {
    std::int64_t from = 0, to = 0;
    bool operator==(const NumberRange&) const = default;
};

// Numbers the tracker stopped waiting for because a site had more than kMaxMissing missing.
struct GivenUp {
    std::int64_t from = 0, to = 0, count = 0;
};

class StreamTrack {
public:
    // At most this many missing numbers per site are tracked (one replay request's worth, the most a
    // gateway answers at once); beyond it the oldest are given up: counted as lost and logged.
    static constexpr std::int64_t kMaxMissing = 10000;

    // A stream first seen through the site's `gateway` message: everything up to `sent` was
    // delivered before the room watched it.
    static StreamTrack from_gateway(std::string stream, std::int64_t sent);
    // A stream first seen through a numbered message: it starts just below it.
    static StreamTrack from_message(std::string stream, std::int64_t seq);
    // A stream that began while the room was watching: every number from 1 is awaited, whatever
    // number the room first hears of (a broker that lost the first ones lost them for the room too).
    static StreamTrack from_start(std::string stream);
    // A new stream of a site the room already followed under another one (its outbox was replaced):
    // a gateway numbers a new stream from 1, so every number below the first one seen is missing.
    // `lost`: what the site had lost so far, carried over so that its count never goes back.
    static StreamTrack replacing(std::string stream, std::int64_t lost);
    // The numbers 1..upto, taken as delivered when the stream was first heard of through a
    // numbered message, turn out to have been sent while the room watched (the site's `gateway`
    // message, which came after, says its stream began later): they are missing from `now`. None
    // of them was counted received (a number at or below the mark is a copy), so one that did come
    // is asked for once more and deduplicated.
    void reopen_first(std::int64_t upto, TimePoint now, std::optional<GivenUp>* given_up = nullptr);
    // Read back from the store.
    StreamTrack(std::string stream, std::int64_t mark, std::int64_t top, std::int64_t lost,
                std::vector<MissingRange> missing);

    // A numbered message arrived. True when it was a number the room did not have.
    bool receive(std::int64_t seq, TimePoint now, std::optional<GivenUp>* given_up = nullptr);
    // The gateway says the broker acknowledged everything up to `seq`: numbers above what arrived
    // are missing from now. True when that raised what is known sent.
    bool sent_up_to(std::int64_t seq, TimePoint now, std::optional<GivenUp>* given_up = nullptr);
    // The gateway answered that from..to are gone: how many missing numbers that settled (those
    // received are not lost; numbers above what was known sent are taken as sent and lost, and those
    // between them and `from` as sent and missing). That gap may go past kMaxMissing: the oldest
    // missing numbers are then given up, as by sent_up_to, and not among those settled.
    std::int64_t lose(std::int64_t from, std::int64_t to, TimePoint now,
                      std::optional<GivenUp>* given_up = nullptr);
    // Gives up on the missing ranges first missed at or before `cutoff` (no answer came): counted as
    // lost. Returns them, lowest first.
    std::vector<GivenUp> give_up_missed_before(TimePoint cutoff);
    // A number counted lost arrived after all (a message the gateway had moved aside and an operator
    // requeued, or one later than the room waited): it is no longer counted. The store knows which
    // numbers were lost (newly_lost() of each change); the track keeps only the count.
    void found_lost(std::int64_t count);
    // The numbers this track counted lost since it was built or loaded, in the order it did.
    const std::vector<NumberRange>& newly_lost() const { return newly_lost_; }

    // Missing ranges asked for now (they are due again after `every`).
    void asked(std::int64_t from, std::int64_t to, TimePoint now);

    // Ranges missing for at least `after` and not asked for within `every`, lowest first.
    std::vector<MissingRange> due(TimePoint now, Duration after, Duration every) const;

    const std::string& stream() const { return stream_; }
    std::int64_t mark() const { return mark_; }
    std::int64_t top() const { return top_; }
    std::int64_t lost() const { return lost_; }
    std::int64_t missing_count() const { return missing_count_; }
    std::vector<MissingRange> missing() const;

private:
    StreamTrack(std::string stream, std::int64_t mark);
    // Marks from..to missing (all above top_ before), then keeps at most kMaxMissing.
    void extend(std::int64_t to, TimePoint now, std::optional<GivenUp>* given_up);
    // Gives up the oldest missing numbers beyond kMaxMissing.
    void cap(std::optional<GivenUp>* given_up);
    void advance_mark();
    // Removes the numbers from..to from the missing ranges; returns how many were missing. With
    // `lost`, those numbers are counted lost.
    std::int64_t settle(std::int64_t from, std::int64_t to, bool lost = false);
    void count_lost(std::int64_t from, std::int64_t to);

    std::string stream_;
    std::int64_t mark_ = 0;
    std::int64_t top_ = 0;
    std::int64_t lost_ = 0;
    std::int64_t missing_count_ = 0;
    std::map<std::int64_t, MissingRange> missing_;  // by `from`; disjoint, all in (mark_, top_]
    std::vector<NumberRange> newly_lost_;
};

// One replay request's range, as sent on <prefix>/<site>/replay.
struct ReplayRange {
    std::int64_t from = 0, to = 0;
    bool operator==(const ReplayRange&) const = default;
};

// At most this many numbers per request (docs/mqtt.md: a gateway refuses more).
constexpr std::int64_t kMaxReplaySpan = 10000;
// Two missing ranges go in one request when at most this many numbers the room already has lie
// between them (they are sent again and deduplicated); farther apart, they are asked separately.
constexpr std::int64_t kMaxResentInRequest = 100;

// The requests that cover `missing` (sorted, disjoint): one when they are close, several when
// they are far apart or span more than one request may name.
std::vector<ReplayRange> plan_requests(const std::vector<MissingRange>& missing);

}  // namespace kg::monitor
