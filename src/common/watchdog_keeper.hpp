#pragma once
// Feeds a service watchdog (systemd's WatchdogSec) from its own thread while the thread that
// normally feeds it is busy with one long piece of work: a reload checks the file and loads every
// model, stops the cameras, flushes clips, drains the outbox, joins the sensor pollers, then builds
// and starts everything again. On a slow box that can pass the watchdog's interval, and systemd would
// kill a gateway that is doing what it was asked. Bounded by `longest`: a reload that hangs is still
// caught.

#include <chrono>
#include <functional>
#include <memory>

#include "common/worker_thread.hpp"

namespace kg {

class WatchdogKeeper {
public:
    // `every`: how often to feed it (half the watchdog's interval); zero: there is no watchdog, and
    // begin() does nothing.
    WatchdogKeeper(std::function<void()> feed, std::chrono::milliseconds every,
                   std::chrono::milliseconds longest)
        : feed_(std::move(feed)), every_(every), longest_(longest) {}
    WatchdogKeeper(const WatchdogKeeper&) = delete;
    WatchdogKeeper& operator=(const WatchdogKeeper&) = delete;
    ~WatchdogKeeper() { end(); }

    // Feeds now and every `every` until end(), for at most `longest`. Again while begun: nothing.
    void begin() {
        if (every_.count() <= 0 || thread_) return;
        feed_();
        thread_ = std::make_unique<WorkerThread>();
        // The worker by address, not through thread_: end() empties thread_ before it joins.
        thread_->start([this, worker = thread_.get(), until = std::chrono::steady_clock::now() + longest_] {
            while (worker->wait_for(every_) && std::chrono::steady_clock::now() < until) feed_();
        });
    }
    // The usual feeder is back.
    void end() { thread_.reset(); }
    bool active() const { return thread_ != nullptr; }

private:
    std::function<void()> feed_;
    const std::chrono::milliseconds every_, longest_;
    std::unique_ptr<WorkerThread> thread_;
};

}  // namespace kg
