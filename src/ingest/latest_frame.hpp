#pragma once
// Hands frames from one ingest worker to the analysis without ever blocking ingest: a triple
// buffer in which the newest frame wins. The writer fills back(), publish() makes it the ready
// frame; a ready frame that analysis never took is overwritten and counted as dropped. No frame
// is allocated after the first three.

#include <atomic>
#include <cstdint>
#include <mutex>

#include "ingest/frame.hpp"

namespace kg::ingest {

class LatestFrame {
public:
    // Writer side (the ingest thread only).
    Frame& back() { return buffers_[back_]; }

    // Returns true when this frame replaced one that was never taken.
    bool publish() {
        std::lock_guard lock(mutex_);
        std::swap(back_, ready_);
        const bool dropped = fresh_;
        fresh_ = true;
        if (dropped) dropped_.fetch_add(1, std::memory_order_relaxed);
        return dropped;
    }

    // Reader side (one analysis worker at a time): the newest frame, or nullptr if none is new.
    // The pointer stays valid until the next take().
    const Frame* take() {
        std::lock_guard lock(mutex_);
        if (!fresh_) return nullptr;
        std::swap(front_, ready_);
        fresh_ = false;
        return &buffers_[front_];
    }

    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

private:
    Frame buffers_[3];
    int back_ = 0, ready_ = 1, front_ = 2;
    bool fresh_ = false;
    std::mutex mutex_;
    std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace kg::ingest
