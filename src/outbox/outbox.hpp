#pragma once
// Events wait in the outbox until the broker has acknowledged them. Every message is committed to
// the store before it may be sent, sent one at a time in the order it was accepted, and removed
// only after its PUBACK. While the broker is away messages queue (within the store's budget) and
// the checks keep running; after a restart whatever was not acknowledged is sent again, in order.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "events/event.hpp"
#include "outbox/sqlite_store.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"

namespace kg::outbox {

class Outbox final : public events::EventSink {
public:
    Outbox(SqliteStore& store, publish::MqttLink& link, publish::Topics topics, std::string site,
           std::shared_ptr<spdlog::logger> log);
    ~Outbox() override;

    void submit(const events::Event& event) override;
    void submit_snapshot(const events::Event& event, std::string jpeg) override;
    void submit_clip(const events::ClipReport& clip) override;
    // Commits the message; false (and logged) if the store could not take it.
    bool enqueue(Message message);

    void start();
    // Gives the queue up to `drain` to empty while connected, then stops the sender. What is left
    // stays in the store for the next start.
    void stop(std::chrono::milliseconds drain);

    std::size_t depth() const { return store_.size(); }
    std::uint64_t dropped() const { return store_.dropped_total(); }
    std::uint64_t refused() const { return store_.refused_total(); }
    std::uint64_t delivered() const { return delivered_.load(); }
    // Messages moved aside because the broker kept refusing them (SqliteStore::bury).
    std::uint64_t dead() const { return store_.dead_total(); }

private:
    void run();
    void set_aside(const Message& head, int losses);
    void pause(std::chrono::milliseconds how_long);

    SqliteStore& store_;
    publish::MqttLink& link_;
    publish::Topics topics_;
    std::string site_;
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::atomic<std::uint64_t> delivered_{0};
    // The smallest message moved aside since start (sender thread only).
    std::size_t smallest_refused_ = std::numeric_limits<std::size_t>::max();
    std::thread thread_;
};

}  // namespace kg::outbox
