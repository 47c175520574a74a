#pragma once
// The open dashboards' live view of the sites, at most one update a site a period, each with the
// site's row. Every state message changes a site, and a city's room takes hundreds a second: an
// event each, upon which every dashboard fetched every site, held the store (and the ingest waiting
// behind it) for changes nobody can read that fast.

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "common/log_throttle.hpp"
#include "common/worker_thread.hpp"

namespace kg::monitor {

class SiteUpdates {
public:
    // The site's row as the API shows it now (nullopt: the room does not have it), and where the
    // rows go: a JSON array of at most kRowsPerSend. Both run on this object's thread, or on the
    // caller's of flush().
    using RowOf = std::function<std::optional<nlohmann::json>(const std::string& site)>;
    using Send = std::function<void(const nlohmann::json& rows)>;
    // A frame per site, hundreds at once, overflowed a dashboard's stream queue on a slow link
    // (it is closed then, and the page reconnects and fetches everything): a few frames instead.
    static constexpr std::size_t kRowsPerSend = 100;

    SiteUpdates(std::chrono::milliseconds period, RowOf row_of, Send send,
                std::shared_ptr<spdlog::logger> log);
    ~SiteUpdates() { stop(); }
    SiteUpdates(const SiteUpdates&) = delete;
    SiteUpdates& operator=(const SiteUpdates&) = delete;

    // The site changed; from any thread, without waiting on the store.
    void mark(const std::string& site);
    // Sends the row of each site marked since the last flush; how many rows went.
    std::size_t flush();

    void start();  // flushes every period
    void stop();

private:
    const std::chrono::milliseconds period_;
    const RowOf row_of_;
    const Send send_;
    const std::shared_ptr<spdlog::logger> log_;
    std::mutex mutex_;
    std::set<std::string> marked_;
    LogThrottle failures_;
    WorkerThread thread_;
};

}  // namespace kg::monitor
