#include "publish/outbox.hpp"

#include "publish/payloads.hpp"

namespace kg::publish {
namespace {
constexpr auto kAckTimeout = std::chrono::seconds(10);
constexpr auto kRetryPause = std::chrono::milliseconds(200);
}  // namespace

Outbox::Outbox(MqttLink& link, Topics topics, std::string site, std::size_t max_messages,
               std::shared_ptr<spdlog::logger> log)
    : link_(link),
      topics_(std::move(topics)),
      site_(std::move(site)),
      max_messages_(max_messages),
      log_(std::move(log)) {}

Outbox::~Outbox() { stop(std::chrono::milliseconds(0)); }

void Outbox::submit(const events::Event& event) {
    log_->info("event {} {} {}/{}/{} score {:.2f}", events::to_string(event.state), event.id, event.source,
               event.check, event.label, event.score);
    enqueue({topics_.events(), event_payload(event, site_), 1, false});
}

void Outbox::enqueue(OutboxMessage message) {
    {
        std::lock_guard lock(mutex_);
        if (queue_.size() >= max_messages_) {
            // Full: the oldest goes, and the loss is counted and logged, never silent.
            queue_.pop_front();
            ++dropped_;
            log_->error("outbox full ({} messages): dropped the oldest, {} dropped so far", max_messages_,
                        dropped_);
        }
        queue_.push_back(std::move(message));
    }
    cv_.notify_all();
}

void Outbox::start() {
    thread_ = std::thread([this] { run(); });
}

void Outbox::stop(std::chrono::milliseconds drain) {
    if (!thread_.joinable()) return;
    const auto deadline = std::chrono::steady_clock::now() + drain;
    {
        std::unique_lock lock(mutex_);
        cv_.wait_until(lock, deadline, [this] { return queue_.empty() || !link_.connected(); });
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (depth() > 0) log_->warn("{} messages not delivered at shutdown", depth());
}

void Outbox::run() {
    for (;;) {
        OutboxMessage head;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            head = queue_.front();  // a copy: the queue may drop its head while we send
        }
        if (!link_.wait_connected(std::chrono::seconds(1))) continue;
        if (!link_.publish_confirmed(head.topic, head.payload, head.qos, head.retain, kAckTimeout)) {
            std::unique_lock lock(mutex_);
            cv_.wait_for(lock, kRetryPause, [this] { return stop_; });
            continue;
        }
        {
            std::lock_guard lock(mutex_);
            if (!queue_.empty() && queue_.front().payload == head.payload) queue_.pop_front();
        }
        cv_.notify_all();
    }
}

std::size_t Outbox::depth() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

std::uint64_t Outbox::dropped() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

}  // namespace kg::publish
