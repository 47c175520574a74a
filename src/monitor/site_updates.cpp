#include "monitor/site_updates.hpp"

namespace kg::monitor {

SiteUpdates::SiteUpdates(std::chrono::milliseconds period, RowOf row_of, Send send,
                         std::shared_ptr<spdlog::logger> log)
    : period_(period), row_of_(std::move(row_of)), send_(std::move(send)), log_(std::move(log)) {}

void SiteUpdates::mark(const std::string& site) {
    std::lock_guard lock(mutex_);
    marked_.insert(site);
}

std::size_t SiteUpdates::flush() {
    std::set<std::string> sites;
    {
        std::lock_guard lock(mutex_);
        sites.swap(marked_);
    }
    std::size_t sent = 0;
    auto rows = nlohmann::json::array();
    const auto send = [&] {
        if (rows.empty()) return;
        try {
            send_(rows);
            sent += rows.size();
        } catch (const std::exception& e) {
            if (const auto n = failures_.pass())
                log_->warn(
                    "live update of {} site(s) not sent: {} ({} such failure(s) since the last such line)",
                    rows.size(), e.what(), n);
        }
        rows = nlohmann::json::array();
    };
    for (const auto& site : sites) {
        try {
            if (auto row = row_of_(site)) rows.push_back(std::move(*row));
        } catch (const std::exception& e) {
            // The dashboards keep the row they have until the site's next change (or their own
            // refresh, every 20 s); the other sites' updates go on.
            if (const auto n = failures_.pass())
                log_->warn(
                    "live update of site {} not sent: {} ({} such failure(s) since the last such line)", site,
                    e.what(), n);
        }
        if (rows.size() >= kRowsPerSend) send();
    }
    send();
    return sent;
}

void SiteUpdates::start() {
    thread_.start([this] {
        while (thread_.wait_for(period_)) flush();
    });
}

void SiteUpdates::stop() { thread_.stop(); }

}  // namespace kg::monitor
