#pragma once
// kitchen-monitor wired together: the store, MQTT ingest of every site, the decision publisher
// the replay requester, the notifier and the dashboard server. Start order store -> dashboard ->
// decisions -> notifier -> MQTT -> replay requests; stop in reverse,
// so no message is taken from the broker that the monitor can no longer store.

#include <boost/asio/io_context.hpp>
#include <memory>

#include "common/logging.hpp"
#include "common/worker_thread.hpp"
#include "monitor/api.hpp"
#include "monitor/auth.hpp"
#include "monitor/decisions.hpp"
#include "monitor/ingest.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/mqtt_client.hpp"
#include "monitor/notifier.hpp"
#include "monitor/replay.hpp"
#include "monitor/site_updates.hpp"
#include "monitor/store.hpp"
#include "monitor/web_server.hpp"

namespace kg::monitor {

class Monitor {
public:
    // Opens the database and binds the dashboard's address; throws with the cause if either fails.
    Monitor(const MonitorConfig& cfg, const Logging& logging, boost::asio::io_context& io);
    ~Monitor();
    Monitor(const Monitor&) = delete;
    Monitor& operator=(const Monitor&) = delete;

    void start();
    void stop();
    unsigned short http_port() const { return web_->port(); }
    bool mqtt_connected() const { return mqtt_->connected(); }

private:
    void notify(const Change& change);
    void prune_until_done();

    MonitorConfig cfg_;
    std::shared_ptr<spdlog::logger> log_;
    Store store_;
    Auth auth_;
    std::shared_ptr<EventHub> hub_;
    // Before ingest: its first message marks a site. A site's change reaches the dashboards within
    // kSiteUpdatePeriod, its alerts at once.
    static constexpr std::chrono::seconds kSiteUpdatePeriod{1};
    SiteUpdates site_updates_;
    std::unique_ptr<Ingest> ingest_;
    std::unique_ptr<MqttClient> mqtt_;
    std::unique_ptr<DecisionPublisher> decisions_;
    std::unique_ptr<ReplayRequester> replay_;  // null with replay.enabled off
    std::unique_ptr<Notifier> notifier_;       // null without notify.targets
    std::unique_ptr<WebServer> web_;
    WorkerThread retention_;  // deletes what is past cfg_.retention: at start, then hourly
    bool stopped_ = false;
    bool watching_said_ = false;  // on the MQTT client's thread
};

}  // namespace kg::monitor
