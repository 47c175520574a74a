#pragma once
// A thread owned by an object, with a clear stop: stop() wakes any wait and joins. The body polls
// stopping() and sleeps with wait_for(), which returns early (false) when asked to stop.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kg {

class WorkerThread {
public:
    WorkerThread() = default;
    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;
    ~WorkerThread() { stop(); }

    // Again after stop() too (the thread was joined).
    void start(std::function<void()> body) {
        {
            std::lock_guard lock(mutex_);  // wake() may come from another thread meanwhile
            stop_ = false;
            woken_ = false;
        }
        thread_ = std::thread(std::move(body));
    }
    bool running() const { return thread_.joinable(); }

    void stop() {
        if (!thread_.joinable()) return;
        request_stop();
        thread_.join();
    }

    // Asks without waiting: an owner of several threads asks them all, then joins each.
    void request_stop() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
    }

    bool stopping() const { return stop_.load(); }

    // Sleeps up to `d`, or until stop() or wake(); false when stopping.
    template <typename Rep, typename Period>
    bool wait_for(std::chrono::duration<Rep, Period> d) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, d, [this] { return stop_.load() || woken_; });
        woken_ = false;
        return !stop_.load();
    }

    void wake() {
        {
            std::lock_guard lock(mutex_);
            woken_ = true;
        }
        cv_.notify_all();
    }

private:
    std::atomic<bool> stop_{false};
    bool woken_ = false;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::thread thread_;
};

}  // namespace kg
