#pragma once
// Events wait here until the broker has acknowledged them. Messages are sent one at a time, in
// the order they were submitted, and removed only after their PUBACK; while the broker is away
// they queue (within a bounded size) and the checks keep running.

#include <spdlog/logger.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "events/event.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"

namespace kg::publish {

struct OutboxMessage {
    std::string topic;
    std::string payload;
    int qos = 1;
    bool retain = false;
};

class Outbox final : public events::EventSink {
  public:
    Outbox(MqttLink& link, Topics topics, std::string site, std::size_t max_messages,
           std::shared_ptr<spdlog::logger> log);
    ~Outbox() override;

    void submit(const events::Event& event) override;
    void enqueue(OutboxMessage message);

    void start();
    // Gives the queue up to `drain` to empty while connected, then stops the sender.
    void stop(std::chrono::milliseconds drain);

    std::size_t depth() const;
    std::uint64_t dropped() const;

  private:
    void run();

    MqttLink& link_;
    Topics topics_;
    std::string site_;
    std::size_t max_messages_;
    std::shared_ptr<spdlog::logger> log_;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<OutboxMessage> queue_;
    std::uint64_t dropped_ = 0;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace kg::publish
