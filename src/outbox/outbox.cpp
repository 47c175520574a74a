#include "outbox/outbox.hpp"

#include "publish/payloads.hpp"

namespace kg::outbox {
namespace {
constexpr auto kAckTimeout = std::chrono::seconds(10);
constexpr auto kRetryPause = std::chrono::milliseconds(200);
constexpr auto kStoreErrorPause = std::chrono::seconds(1);
}  // namespace

Outbox::Outbox(SqliteStore& store, publish::MqttLink& link, publish::Topics topics, std::string site,
               std::shared_ptr<spdlog::logger> log)
    : store_(store), link_(link), topics_(std::move(topics)), site_(std::move(site)), log_(std::move(log)) {}

Outbox::~Outbox() { stop(std::chrono::milliseconds(0)); }

void Outbox::submit(const events::Event& event) {
    if (enqueue({0, topics_.events(), publish::event_payload(event, site_), 1, false, Priority::alert})) {
        // Logged once committed: this line is the gateway's promise that the message will arrive.
        log_->info("event {} queued: {}/{}/{} score {:.2f}", event.message_id(), event.source, event.check,
                   event.label, event.score);
    }
}

void Outbox::submit_snapshot(const events::Event& event, std::string jpeg) {
    enqueue({0, topics_.event_snapshot(event.id), std::move(jpeg), 1, false, Priority::evidence});
}

void Outbox::submit_clip(const events::ClipReport& clip) {
    enqueue({0, topics_.event_clip(clip.event_id), publish::clip_payload(clip, site_), 1, false,
             Priority::evidence});
}

bool Outbox::enqueue(Message message) {
    try {
        const std::size_t dropped = store_.append(message);
        if (dropped > 0) {
            log_->error("outbox full: dropped {} older messages to keep {} ({} dropped in total)", dropped,
                        message.topic, store_.dropped_total());
        }
    } catch (const StoreError& e) {
        // The store is the durability guarantee; without it the message is lost, loudly.
        log_->error("message for {} lost: {}", message.topic, e.what());
        return false;
    }
    {
        std::lock_guard lock(mutex_);  // orders the wake-up after the sender's check
    }
    cv_.notify_all();
    return true;
}

void Outbox::start() {
    if (const auto n = store_.size(); n > 0)
        log_->info("{} messages from before the restart wait to be sent", n);
    thread_ = std::thread([this] { run(); });
}

void Outbox::stop(std::chrono::milliseconds drain) {
    if (!thread_.joinable()) return;
    const auto deadline = std::chrono::steady_clock::now() + drain;
    while (std::chrono::steady_clock::now() < deadline && store_.size() > 0 && link_.connected()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (const auto n = store_.size(); n > 0)
        log_->warn("{} messages kept in the outbox for the next start", n);
}

void Outbox::run() {
    for (;;) {
        std::optional<Message> head;
        {
            std::unique_lock lock(mutex_);
            if (stop_) return;
        }
        try {
            head = store_.front();
        } catch (const StoreError& e) {
            log_->error("{}", e.what());
            std::unique_lock lock(mutex_);
            cv_.wait_for(lock, kStoreErrorPause, [this] { return stop_; });
            continue;
        }
        if (!head) {
            std::unique_lock lock(mutex_);
            cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_ || store_.size() > 0; });
            continue;
        }
        if (!link_.wait_connected(std::chrono::seconds(1))) continue;
        if (!link_.publish_confirmed(head->topic, head->payload, head->qos, head->retain, kAckTimeout)) {
            std::unique_lock lock(mutex_);
            cv_.wait_for(lock, kRetryPause, [this] { return stop_; });
            continue;
        }
        try {
            store_.remove(head->seq);
            delivered_.fetch_add(1);
        } catch (const StoreError& e) {
            // Delivered but not removed: it will be sent again, and receivers deduplicate.
            log_->error("{}", e.what());
        }
    }
}

}  // namespace kg::outbox
