#pragma once
// Asks sites again for what the room is missing (docs/mqtt.md, "Sequence numbers and replay"): per
// site, the numbers missing for `replay.after` go out as requests on <prefix>/<site>/replay (QoS 1,
// one request unless the ranges are far apart), again every `replay.every` while they stay missing.
// The gateway answers with the messages again or with `lost`; both arrive through Ingest.

#include <spdlog/logger.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/worker_thread.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

std::string replay_topic(const std::string& prefix, const std::string& site);
nlohmann::json replay_request(const std::string& request_id, const std::string& site,
                              const std::string& stream, const ReplayRange& range, const std::string& monitor,
                              TimePoint now);

class ReplayRequester {
public:
    // Publishes at QoS 1 and returns true once the broker acknowledged it.
    using Publish = std::function<bool(const std::string& topic, const std::string& payload)>;

    // A site's missing or lost counts changed (a range given up).
    using Changed = std::function<void(const std::string& site)>;

    ReplayRequester(Store& store, Publish publish, std::string prefix, std::string client_id,
                    ReplaySettings cfg, std::shared_ptr<spdlog::logger> log, Changed changed = {});
    ~ReplayRequester() { stop(); }
    ReplayRequester(const ReplayRequester&) = delete;
    ReplayRequester& operator=(const ReplayRequester&) = delete;

    void start();
    void stop() { worker_.stop(); }

    // One pass: gives up on what had no answer for `give_up` (counted as lost, logged), then asks for
    // what is due at `now`. Returns how many requests the broker took.
    int ask_due(TimePoint now);
    std::uint64_t requests() const { return requests_.load(); }
    // Numbers given up for want of an answer, since start.
    std::uint64_t given_up() const { return given_up_.load(); }

private:
    void run();

    Store& store_;
    Publish publish_;
    std::string prefix_;
    std::string client_id_;
    ReplaySettings cfg_;
    std::shared_ptr<spdlog::logger> log_;
    Changed changed_;
    // request_id = <client id>-<start time in ms>-<n>: unique across instances and restarts.
    std::string id_prefix_;
    std::uint64_t next_id_ = 1;
    std::atomic<std::uint64_t> requests_{0};
    std::atomic<std::uint64_t> given_up_{0};
    WorkerThread worker_;
};

}  // namespace kg::monitor
