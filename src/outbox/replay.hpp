#pragma once
// The room's replay requests (docs/mqtt.md, "Sequence numbers and replay"): what one says, how it is
// read, and the desk that answers them off the MQTT client's thread, since an answer reads and
// writes the outbox's SQLite store.

#include <spdlog/logger.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/worker_thread.hpp"

namespace kg::outbox {

class Outbox;

// A request may name at most this many numbers.
constexpr std::int64_t kMaxReplayNumbers = 10000;

struct ReplayRequest {
    std::string request_id, site, stream, monitor, time;
    std::int64_t from = 0, to = 0;
};

// Reads a request addressed to `site`. Throws std::invalid_argument saying what is wrong with it
// (not JSON, a field missing or of the wrong type, from > to, too many numbers, another site).
ReplayRequest parse_replay_request(std::string_view payload, const std::string& site);

// Takes requests as they arrive (from the MQTT client's callback thread, without blocking it) and
// answers them one at a time on a thread of its own through the outbox.
class ReplayDesk {
public:
    ReplayDesk(Outbox& outbox, std::string site, std::shared_ptr<spdlog::logger> log);
    ~ReplayDesk();
    ReplayDesk(const ReplayDesk&) = delete;
    ReplayDesk& operator=(const ReplayDesk&) = delete;

    // Queues a request's payload; one beyond kMaxWaiting waiting is dropped with a warning (the
    // room asks again while numbers stay missing).
    void submit(std::string payload);
    void start();
    void stop();

    // Reads and answers one request now, on the caller's thread; a bad one is logged and dropped.
    void handle(const std::string& payload);

    static constexpr std::size_t kMaxWaiting = 100;

private:
    void run();

    Outbox& outbox_;
    std::string site_;
    std::shared_ptr<spdlog::logger> log_;
    std::mutex mutex_;
    std::deque<std::string> waiting_;
    std::uint64_t dropped_ = 0;
    WorkerThread worker_;
};

}  // namespace kg::outbox
