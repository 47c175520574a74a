#pragma once
// Counters of one camera's ingest and analysis, written by the worker and the analysis pool and
// read by whoever reports them (MQTT state, metrics). Thread-safe.

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "common/time.hpp"
#include "ingest/failure_cause.hpp"

namespace kg::ingest {

struct CameraStatsSnapshot {
    std::uint64_t frames_in = 0;       // decoded
    std::uint64_t frames_sampled = 0;  // handed to analysis
    std::uint64_t frames_analysed = 0;
    std::uint64_t analysis_ns = 0;     // time spent in the checks, in total
    std::uint64_t frames_dropped = 0;  // sampled but overwritten before analysis took them
    std::uint64_t decode_errors = 0;
    // Pictures the decoder gave with parts it could not decode, filled in from around them (a
    // damaged stream: packets lost or corrupted on the way, a failing encoder): smeared pictures.
    std::uint64_t frames_damaged = 0;
    std::uint64_t packets_lost = 0;     // RTP packets that never came (over UDP)
    std::uint64_t check_errors = 0;     // a check failed on a frame (its observations of that frame lost)
    std::uint64_t timestamp_jumps = 0;  // the camera's clock jumped or stepped back, no reconnect (absorbed)
    int reconnects_1h = 0;
    int stalls_1h = 0;
    int breaks_1h = 0;  // connections that gave pictures and then failed, in the last hour
    bool connected = false;
    std::optional<TimePoint> last_frame;
    // The same moment on the steady clock: how long ago it was is judged on this one, since a wall
    // clock set back made a camera that stopped look alive for as long as the step.
    std::optional<SteadyPoint> last_frame_steady;
    // The first frame of the connection in progress: how long the camera has been back.
    std::optional<SteadyPoint> streaming_since;
    // The latest failure to read the camera: what FFmpeg said, its cause, and when (the room
    // reading `last_error` beside `online: true` could not tell an old failure from a new one).
    std::string last_error;
    std::optional<FailureCause> last_error_cause;
    std::optional<TimePoint> last_error_time;
    std::optional<SteadyPoint> last_error_steady;  // the same moment on the steady clock
};

class CameraStats {
public:
    void frame_decoded(TimePoint t, SteadyPoint steady = std::chrono::steady_clock::now()) {
        frames_in_.fetch_add(1, std::memory_order_relaxed);
        last_frame_ns_.store(t.time_since_epoch().count(), std::memory_order_relaxed);
        last_frame_steady_ns_.store(steady.time_since_epoch().count(), std::memory_order_relaxed);
        SteadyPoint::rep none = 0;
        streaming_since_ns_.compare_exchange_strong(none, steady.time_since_epoch().count(),
                                                    std::memory_order_relaxed);
    }
    void frame_sampled() { frames_sampled_.fetch_add(1, std::memory_order_relaxed); }
    // One frame through the checks, and how long that took.
    void frame_analysed(std::chrono::nanoseconds took) {
        frames_analysed_.fetch_add(1, std::memory_order_relaxed);
        analysis_ns_.fetch_add(static_cast<std::uint64_t>(took.count()), std::memory_order_relaxed);
    }
    void frames_dropped(std::uint64_t total) { frames_dropped_.store(total, std::memory_order_relaxed); }
    void decode_errors(std::uint64_t added) { decode_errors_.fetch_add(added, std::memory_order_relaxed); }
    void frames_damaged(std::uint64_t added) { frames_damaged_.fetch_add(added, std::memory_order_relaxed); }
    void packets_lost(std::uint64_t added) { packets_lost_.fetch_add(added, std::memory_order_relaxed); }
    void check_failed() { check_errors_.fetch_add(1, std::memory_order_relaxed); }
    void timestamp_jumps(std::uint64_t added) {
        timestamp_jumps_.fetch_add(added, std::memory_order_relaxed);
    }

    void connected() {
        std::lock_guard lock(mutex_);
        connected_ = true;
        streaming_since_ns_.store(0, std::memory_order_relaxed);
    }
    // The connection ended without a fault of the camera's (the gateway stops).
    void disconnected() {
        std::lock_guard lock(mutex_);
        connected_ = false;
        streaming_since_ns_.store(0, std::memory_order_relaxed);
    }
    // A try to read the camera failed (before or after pictures came), at `at`.
    void failed(FailureCause cause, std::string why, TimePoint at,
                SteadyPoint steady = std::chrono::steady_clock::now()) {
        std::lock_guard lock(mutex_);
        last_error_steady_ = steady;
        connected_ = false;
        streaming_since_ns_.store(0, std::memory_order_relaxed);
        last_error_ = std::move(why);
        last_error_cause_ = cause;
        last_error_time_ = at;
    }
    // On the monotonic clock: a wall clock set back an hour counted the reconnects before it as
    // within the last hour for an hour more, and one set ahead hid them.
    void reconnect(SteadyPoint t) { remember(reconnects_, t); }
    void stall(SteadyPoint t) { remember(stalls_, t); }
    // A connection that had given pictures failed: the stream broke (a failed try to reconnect is
    // not another break, nor is an outage's every try).
    void broke(SteadyPoint t) { remember(breaks_, t); }

    CameraStatsSnapshot snapshot(SteadyPoint now) const {
        CameraStatsSnapshot s;
        s.frames_in = frames_in_.load(std::memory_order_relaxed);
        s.frames_sampled = frames_sampled_.load(std::memory_order_relaxed);
        s.frames_analysed = frames_analysed_.load(std::memory_order_relaxed);
        s.analysis_ns = analysis_ns_.load(std::memory_order_relaxed);
        s.frames_dropped = frames_dropped_.load(std::memory_order_relaxed);
        s.decode_errors = decode_errors_.load(std::memory_order_relaxed);
        s.frames_damaged = frames_damaged_.load(std::memory_order_relaxed);
        s.packets_lost = packets_lost_.load(std::memory_order_relaxed);
        s.check_errors = check_errors_.load(std::memory_order_relaxed);
        s.timestamp_jumps = timestamp_jumps_.load(std::memory_order_relaxed);
        const auto last = last_frame_ns_.load(std::memory_order_relaxed);
        if (last != 0) s.last_frame = TimePoint(TimePoint::duration(last));
        if (const auto steady = last_frame_steady_ns_.load(std::memory_order_relaxed); steady != 0)
            s.last_frame_steady = SteadyPoint(SteadyPoint::duration(steady));
        if (const auto since = streaming_since_ns_.load(std::memory_order_relaxed); since != 0)
            s.streaming_since = SteadyPoint(SteadyPoint::duration(since));
        std::lock_guard lock(mutex_);
        s.connected = connected_;
        s.last_error = last_error_;
        s.last_error_cause = last_error_cause_;
        s.last_error_time = last_error_time_;
        s.last_error_steady = last_error_steady_;
        s.reconnects_1h = count_since(reconnects_, now - std::chrono::hours(1));
        s.stalls_1h = count_since(stalls_, now - std::chrono::hours(1));
        s.breaks_1h = count_since(breaks_, now - std::chrono::hours(1));
        return s;
    }

private:
    void remember(std::deque<SteadyPoint>& q, SteadyPoint t) {
        std::lock_guard lock(mutex_);
        q.push_back(t);
        // Bounded: an hour of reconnects at the fastest back-off fits; older ones no longer count.
        while (q.size() > 4096 || (!q.empty() && q.front() < t - std::chrono::hours(1))) q.pop_front();
    }
    static int count_since(const std::deque<SteadyPoint>& q, SteadyPoint since) {
        int n = 0;
        for (auto it = q.rbegin(); it != q.rend() && *it >= since; ++it) ++n;
        return n;
    }

    std::atomic<std::uint64_t> frames_in_{0}, frames_sampled_{0}, frames_analysed_{0}, frames_dropped_{0},
        decode_errors_{0}, frames_damaged_{0}, packets_lost_{0}, check_errors_{0}, analysis_ns_{0},
        timestamp_jumps_{0};
    std::atomic<TimePoint::rep> last_frame_ns_{0};
    std::atomic<SteadyPoint::rep> last_frame_steady_ns_{0}, streaming_since_ns_{0};
    mutable std::mutex mutex_;
    bool connected_ = false;
    std::string last_error_;
    std::optional<FailureCause> last_error_cause_;
    std::optional<TimePoint> last_error_time_;
    std::optional<SteadyPoint> last_error_steady_;
    std::deque<SteadyPoint> reconnects_, stalls_, breaks_;
};

}  // namespace kg::ingest
