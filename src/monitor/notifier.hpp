#pragma once
// Pushes alerts to people who are not watching the dashboard: a duty officer's WeCom or DingTalk
// group, or any endpoint taking JSON (docs/monitor.md, "Notifications").
//
// What to send is decided when an alert's message is stored, in that message's transaction (the
// store's `notifications` table, one row per target, alert and kind): a crash right after the
// alert arrives still sends it, and a message that arrives twice, or at two instances sharing the
// database, queues it once. This thread only sends what is queued: oldest first, a target that
// fails waits with back-off (its other notifications with it) while the others go on, and a
// notification no target took within its `give_up` is dropped and logged.

#include <spdlog/logger.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/worker_thread.hpp"
#include "monitor/http_post.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

// "open" when an alert arrives, "end" when the gateway ends it.
inline constexpr const char* kNotifyOpen = "open";
inline constexpr const char* kNotifyEnd = "end";

// The targets whose filters take `kind` of this event message.
std::vector<std::string> notify_targets_for(const NotifySettings& settings, const EventMessage& m,
                                            const std::string& kind);

// What is posted to `target` for `kind` of the alert: the body and its content type.
struct NotifyBody {
    std::string content_type;
    std::string body;
};
NotifyBody render_notification(const NotifyTarget& target, const std::string& dashboard_url,
                               const Alert& alert, const std::string& kind, const nlohmann::json& alert_json);

// The DingTalk robot's signed URL: timestamp (ms) and sign = base64(HMAC-SHA256(secret,
// "<timestamp>\n<secret>")), URL-encoded, appended to the query.
std::string dingtalk_signed_url(const std::string& url, const std::string& secret, std::int64_t timestamp_ms);

// Whether the target took it: a 2xx answer, and for the WeCom and DingTalk robots (which answer
// 200 to nearly everything) errcode 0 in the body. `why` says what was wrong otherwise.
bool notification_accepted(NotifyTarget::Format format, const HttpAnswer& answer, std::string& why);

class Notifier {
public:
    struct TargetStats {
        std::atomic<std::uint64_t> sent{0};
        std::atomic<std::uint64_t> failures{0};  // attempts that failed (each is retried)
        std::atomic<std::uint64_t> dropped{0};   // given up after give_up
    };

    Notifier(Store& store, const MonitorConfig& cfg, std::shared_ptr<spdlog::logger> log);
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    void start();
    void stop();
    // Something may have been queued: look now rather than at the next poll.
    void wake() { worker_.wake(); }

    // Prometheus text for /metrics: per target sent, failures, dropped, and what waits.
    std::string metrics_text();

private:
    // Sends what is due; true when a full batch was taken (look again at once).
    bool round();
    void send(const QueuedNotification& n, const NotifyTarget& target);

    Store& store_;
    const MonitorConfig& cfg_;
    std::shared_ptr<spdlog::logger> log_;
    std::map<std::string, const NotifyTarget*> targets_;
    std::map<std::string, TargetStats> stats_;
    // Per target, until when it is left alone after a failure, and how many attempts failed in a row
    // (this thread only).
    std::map<std::string, TimePoint> down_until_;
    std::map<std::string, int> failing_;
    Duration lease_{};
    WorkerThread worker_;
};

}  // namespace kg::monitor
