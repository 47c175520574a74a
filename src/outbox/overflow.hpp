#pragma once
// Where the outbox keeps what its store could not take (disk full, file unwritable, database
// locked): a bounded queue in memory, oldest first. Its messages are sent after the stored ones and
// moved into the store as soon as it works again, so an accepted alert is not lost to a full disk
// (only to a power cut or a crash while the store fails). When full it follows the store's rule: a
// message only drops messages no more important than itself, else it is refused.

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "outbox/sqlite_store.hpp"

namespace kg::outbox {

class Overflow {
public:
    struct Limits {
        std::size_t max_messages = 10000;
        std::size_t max_bytes = 64u << 20;
    };
    struct Pushed {
        bool kept = true;
        std::size_t dropped = 0;  // older, no more important messages dropped for it
    };

    explicit Overflow(Limits limits) : limits_(limits) {}

    // Keeps the message under a negative seq of its own (stored messages have positive ones).
    Pushed push(Message message);
    std::optional<Message> front() const;
    // Copies of the first `n` messages, oldest first.
    std::vector<Message> first(std::size_t n) const;
    // Removes the front message if it is still the one with `seq` (true if removed).
    bool pop(std::int64_t seq);

    std::size_t size() const;
    std::uint64_t dropped_total() const;

private:
    bool fits(std::size_t bytes) const;

    Limits limits_;
    mutable std::mutex mutex_;
    std::deque<Message> messages_;
    std::size_t bytes_ = 0;
    std::int64_t last_seq_ = 0;
    std::uint64_t dropped_ = 0;
};

}  // namespace kg::outbox
