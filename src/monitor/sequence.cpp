#include "monitor/sequence.hpp"

#include <algorithm>

namespace kg::monitor {

StreamTrack::StreamTrack(std::string stream, std::int64_t mark)
    : stream_(std::move(stream)), mark_(mark), top_(mark) {}

StreamTrack StreamTrack::from_gateway(std::string stream, std::int64_t sent) {
    return StreamTrack(std::move(stream), std::max<std::int64_t>(sent, 0));
}

StreamTrack StreamTrack::from_message(std::string stream, std::int64_t seq) {
    return StreamTrack(std::move(stream), std::max<std::int64_t>(seq - 1, 0));
}

StreamTrack StreamTrack::from_start(std::string stream) { return StreamTrack(std::move(stream), 0); }

StreamTrack StreamTrack::replacing(std::string stream, std::int64_t lost) {
    StreamTrack t(std::move(stream), 0);
    t.lost_ = lost;
    return t;
}

StreamTrack::StreamTrack(std::string stream, std::int64_t mark, std::int64_t top, std::int64_t lost,
                         std::vector<MissingRange> missing)
    : stream_(std::move(stream)), mark_(mark), top_(std::max(top, mark)), lost_(lost) {
    for (auto& r : missing) {
        // Only what fits the mark and top is kept: a row another version wrote differently must not
        // make the counts lie.
        r.from = std::max(r.from, mark_ + 1);
        r.to = std::min(r.to, top_);
        if (r.from > r.to) continue;
        missing_count_ += r.size();
        missing_[r.from] = r;
    }
    advance_mark();
}

bool StreamTrack::receive(std::int64_t seq, TimePoint now, std::optional<GivenUp>* given_up) {
    if (seq <= mark_) return false;
    if (seq > top_) {
        if (seq - 1 > top_) extend(seq - 1, now, given_up);
        top_ = seq;
        advance_mark();
        return true;
    }
    const bool was_missing = settle(seq, seq) > 0;
    advance_mark();
    return was_missing;
}

bool StreamTrack::sent_up_to(std::int64_t seq, TimePoint now, std::optional<GivenUp>* given_up) {
    if (seq <= top_) return false;
    extend(seq, now, given_up);
    advance_mark();
    return true;
}

std::int64_t StreamTrack::lose(std::int64_t from, std::int64_t to, TimePoint now,
                               std::optional<GivenUp>* given_up) {
    const std::int64_t old_top = top_;
    std::int64_t settled = settle(std::max(from, mark_ + 1), std::min(to, old_top), true);
    if (to > old_top) {
        // Counted lost at once, not made missing first: missing, they could push numbers still
        // awaited (below `from`) past kMaxMissing, and those would be given up unasked.
        const std::int64_t first = std::max(from, old_top + 1);
        if (first - 1 > top_) extend(first - 1, now, given_up);  // sent, still awaited
        count_lost(first, to);
        settled += to - first + 1;
        top_ = to;
    }
    advance_mark();
    return settled;
}

std::vector<GivenUp> StreamTrack::give_up_missed_before(TimePoint cutoff) {
    std::vector<GivenUp> out;
    for (auto it = missing_.begin(); it != missing_.end();) {
        if (it->second.since > cutoff) {
            ++it;
            continue;
        }
        const MissingRange& r = it->second;
        out.push_back({r.from, r.to, r.size()});
        missing_count_ -= r.size();
        count_lost(r.from, r.to);
        it = missing_.erase(it);
    }
    advance_mark();
    return out;
}

void StreamTrack::found_lost(std::int64_t count) { lost_ = std::max<std::int64_t>(lost_ - count, 0); }

void StreamTrack::count_lost(std::int64_t from, std::int64_t to) {
    lost_ += to - from + 1;
    // Ranges counted one after the other (a cap dropping the oldest of several) are one range.
    if (!newly_lost_.empty() && newly_lost_.back().to + 1 == from) {
        newly_lost_.back().to = to;
    } else {
        newly_lost_.push_back({from, to});
    }
}

void StreamTrack::asked(std::int64_t from, std::int64_t to, TimePoint now) {
    auto it = missing_.upper_bound(from);
    if (it != missing_.begin()) --it;
    for (; it != missing_.end() && it->second.from <= to; ++it) {
        if (it->second.to >= from) it->second.asked_at = now;
    }
}

std::vector<MissingRange> StreamTrack::due(TimePoint now, Duration after, Duration every) const {
    std::vector<MissingRange> out;
    for (const auto& [from, r] : missing_) {
        if (now - r.since < after) continue;
        if (r.asked_at && now - *r.asked_at < every) continue;
        out.push_back(r);
    }
    return out;
}

std::vector<MissingRange> StreamTrack::missing() const {
    std::vector<MissingRange> out;
    out.reserve(missing_.size());
    for (const auto& [from, r] : missing_) out.push_back(r);
    return out;
}

void StreamTrack::reopen_first(std::int64_t upto, TimePoint now, std::optional<GivenUp>* given_up) {
    upto = std::min(upto, mark_);
    if (upto < 1) return;
    // Below the mark nothing is missing, so 1..upto is one new range, before all the others.
    missing_[1] = MissingRange{1, upto, now, std::nullopt};
    missing_count_ += upto;
    cap(given_up);
    advance_mark();
}

void StreamTrack::extend(std::int64_t to, TimePoint now, std::optional<GivenUp>* given_up) {
    const std::int64_t from = top_ + 1;
    top_ = to;
    missing_[from] = MissingRange{from, to, now, std::nullopt};
    missing_count_ += to - from + 1;
    cap(given_up);
}

void StreamTrack::cap(std::optional<GivenUp>* given_up) {
    // Beyond the cap the oldest numbers go first: they have had the longest to arrive, and what a
    // gateway kept is its newest.
    GivenUp gone;
    while (missing_count_ > kMaxMissing) {
        auto it = missing_.begin();
        MissingRange r = it->second;
        const std::int64_t excess = missing_count_ - kMaxMissing;
        const std::int64_t drop = std::min(excess, r.size());
        if (gone.count == 0) gone.from = r.from;
        gone.to = r.from + drop - 1;
        gone.count += drop;
        missing_count_ -= drop;
        count_lost(r.from, r.from + drop - 1);
        missing_.erase(it);
        if (drop < r.size()) {
            r.from += drop;
            missing_[r.from] = r;
        }
    }
    if (gone.count > 0 && given_up) *given_up = gone;
}

void StreamTrack::advance_mark() { mark_ = missing_.empty() ? top_ : missing_.begin()->second.from - 1; }

std::int64_t StreamTrack::settle(std::int64_t from, std::int64_t to, bool lost) {
    if (from > to) return 0;
    std::int64_t settled = 0;
    auto it = missing_.upper_bound(from);
    if (it != missing_.begin()) --it;
    while (it != missing_.end() && it->second.from <= to) {
        const MissingRange r = it->second;
        if (r.to < from) {
            ++it;
            continue;
        }
        it = missing_.erase(it);
        const std::int64_t lo = std::max(r.from, from), hi = std::min(r.to, to);
        settled += hi - lo + 1;
        if (lost) count_lost(lo, hi);
        if (r.from < lo) {
            MissingRange left = r;
            left.to = lo - 1;
            missing_[left.from] = left;
        }
        if (hi < r.to) {
            MissingRange right = r;
            right.from = hi + 1;
            it = missing_.emplace(right.from, right).first;
            ++it;
        }
    }
    missing_count_ -= settled;
    return settled;
}

std::vector<ReplayRange> plan_requests(const std::vector<MissingRange>& missing) {
    std::vector<ReplayRange> out;
    for (const auto& r : missing) {
        if (!out.empty()) {
            auto& last = out.back();
            if (r.from - last.to - 1 <= kMaxResentInRequest && r.to - last.from + 1 <= kMaxReplaySpan) {
                last.to = r.to;
                continue;
            }
        }
        // A range longer than one request may name is split.
        for (std::int64_t from = r.from; from <= r.to; from += kMaxReplaySpan)
            out.push_back({from, std::min(r.to, from + kMaxReplaySpan - 1)});
    }
    return out;
}

}  // namespace kg::monitor
