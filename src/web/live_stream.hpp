#pragma once
// One HTTP client's live byte stream (HTTP-FLV): a producer thread (a camera's ingest) pushes
// shared, immutable chunks; the client's connection drains them on the io thread. The queue is
// bounded in bytes: a client that cannot keep up is cut off instead of growing the gateway's
// memory or slowing the camera (the producer never blocks).

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kg::web {

using Chunk = std::shared_ptr<const std::string>;

class LiveStream {
public:
    explicit LiveStream(std::size_t max_queued_bytes) : max_bytes_(max_queued_bytes) {}

    // The stream ends at `deadline` (the viewer's token expires): the client is sent what is queued,
    // then the end. Checked at each push, which a live camera makes several times a second, and by
    // the connection's timer (expire_if_due) for a camera that sends nothing.
    void end_at(std::chrono::system_clock::time_point deadline) {
        std::lock_guard lock(mutex_);
        deadline_ = deadline;
    }
    std::optional<std::chrono::system_clock::time_point> deadline() const {
        std::lock_guard lock(mutex_);
        return deadline_;
    }
    // Ends the stream if its deadline has passed (what is queued still goes out); true if it did.
    bool expire_if_due() {
        std::function<void()> wake;
        {
            std::lock_guard lock(mutex_);
            if (finished_ || !expire_locked()) return false;
            wake = waker_;
        }
        if (wake) wake();
        return true;
    }

    // Producer side (any thread). False once the stream is finished, the client fell behind or the
    // deadline passed.
    bool push(Chunk chunk) {
        std::function<void()> wake;
        bool ok = true;
        {
            std::lock_guard lock(mutex_);
            if (finished_) return false;
            if (expire_locked()) {
                ok = false;  // what is queued still goes out, then the end
            } else if (queued_bytes_ + chunk->size() > max_bytes_) {
                finished_ = overflowed_ = true;
                queue_.clear();
                queued_bytes_ = 0;
                ok = false;
            } else {
                queued_bytes_ += chunk->size();
                queue_.push_back(std::move(chunk));
            }
            wake = waker_;
        }
        if (wake) wake();
        return ok;
    }

    // Ends the stream (the camera went away, the feed closed, the gateway stops).
    void finish() {
        std::function<void()> wake;
        {
            std::lock_guard lock(mutex_);
            finished_ = true;
            wake = waker_;
        }
        if (wake) wake();
    }

    // Consumer side (the connection): called whenever data may be waiting. Must be cheap and
    // must not block; it is called on the producer's thread.
    void set_waker(std::function<void()> waker) {
        std::lock_guard lock(mutex_);
        waker_ = std::move(waker);
    }

    // Moves the waiting chunks into `out`; false when the stream has ended and nothing is left.
    bool take(std::vector<Chunk>& out) {
        std::lock_guard lock(mutex_);
        for (auto& c : queue_) {
            queued_bytes_ -= c->size();
            out.push_back(std::move(c));
        }
        queue_.clear();
        return !(finished_ && out.empty());
    }

    // The client is gone: the producer stops sending at its next push.
    void cancel() {
        std::function<void()> dropped;  // released after the lock: it may own the connection
        {
            std::lock_guard lock(mutex_);
            finished_ = true;
            queue_.clear();
            queued_bytes_ = 0;
            dropped.swap(waker_);
        }
    }

    bool overflowed() const {
        std::lock_guard lock(mutex_);
        return overflowed_;
    }
    // Ended at its deadline (end_at).
    bool expired() const {
        std::lock_guard lock(mutex_);
        return expired_;
    }
    bool finished() const {
        std::lock_guard lock(mutex_);
        return finished_;
    }

private:
    // Under the lock: ends the stream if its deadline has passed; true if it did.
    bool expire_locked() {
        if (!deadline_ || std::chrono::system_clock::now() < *deadline_) return false;
        finished_ = expired_ = true;
        return true;
    }

    const std::size_t max_bytes_;
    mutable std::mutex mutex_;
    std::vector<Chunk> queue_;
    std::size_t queued_bytes_ = 0;
    bool finished_ = false;
    bool overflowed_ = false;
    bool expired_ = false;
    std::optional<std::chrono::system_clock::time_point> deadline_;
    std::function<void()> waker_;
};

}  // namespace kg::web
