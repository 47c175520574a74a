#include "outbox/overflow.hpp"

#include <algorithm>

namespace kg::outbox {
namespace {
std::size_t weight(const Message& m) { return m.payload.size() + m.topic.size(); }
}  // namespace

bool Overflow::fits(std::size_t bytes) const {
    return messages_.size() + 1 <= limits_.max_messages && bytes_ + bytes <= limits_.max_bytes;
}

Overflow::Pushed Overflow::push(Message message) {
    std::lock_guard lock(mutex_);
    const std::size_t size = weight(message);
    if (size > limits_.max_bytes) {
        ++dropped_;
        return {.kept = false, .dropped = 0};
    }
    // Decide before dropping anything: only what is no more important than it may make room.
    std::size_t room_count = messages_.size(), room_bytes = bytes_;
    for (const auto& m : messages_) {
        if (m.priority >= message.priority) {
            --room_count;
            room_bytes -= weight(m);
        }
    }
    if (room_count + 1 > limits_.max_messages || room_bytes + size > limits_.max_bytes) {
        ++dropped_;
        return {.kept = false, .dropped = 0};
    }
    Pushed result;
    for (Priority p : {Priority::replay, Priority::telemetry, Priority::evidence, Priority::alert}) {
        if (p < message.priority) break;
        for (auto it = messages_.begin(); it != messages_.end() && !fits(size);) {
            if (it->priority != p) {
                ++it;
                continue;
            }
            bytes_ -= weight(*it);
            it = messages_.erase(it);
            ++result.dropped;
        }
    }
    dropped_ += result.dropped;
    message.seq = --last_seq_;
    bytes_ += size;
    messages_.push_back(std::move(message));
    return result;
}

std::optional<Message> Overflow::front() const {
    std::lock_guard lock(mutex_);
    if (messages_.empty()) return std::nullopt;
    return messages_.front();
}

std::vector<Message> Overflow::first(std::size_t n) const {
    std::lock_guard lock(mutex_);
    const auto count = std::min(n, messages_.size());
    return {messages_.begin(), messages_.begin() + static_cast<std::ptrdiff_t>(count)};
}

bool Overflow::pop(std::int64_t seq) {
    std::lock_guard lock(mutex_);
    if (messages_.empty() || messages_.front().seq != seq) return false;
    bytes_ -= weight(messages_.front());
    messages_.pop_front();
    return true;
}

std::size_t Overflow::size() const {
    std::lock_guard lock(mutex_);
    return messages_.size();
}

std::uint64_t Overflow::dropped_total() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

}  // namespace kg::outbox
