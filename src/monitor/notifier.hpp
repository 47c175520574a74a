#pragma once
// Pushes alerts to people who are not watching the dashboard: a duty officer's WeCom or DingTalk
// group, or any endpoint taking JSON (docs/monitor.md, "Notifications").
//
// What to send is decided when an alert's message is stored, in that message's transaction (the
// store's `notifications` table, one row per target, alert and kind): a crash right after the
// alert arrives still sends it, and a message that arrives twice, or at two instances sharing the
// database, queues it once. Each target has a thread of its own that sends its queue oldest first,
// so a target that hangs or is down (waiting with back-off) holds up no other. A notification not
// taken within its target's `give_up` is dropped and logged.

#include <spdlog/logger.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/backoff.hpp"
#include "common/worker_thread.hpp"
#include "monitor/http_post.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

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

// taken: a 2xx answer, and for the WeCom and DingTalk robots (which answer 200 to nearly
// everything) errcode 0 in the body. message_refused: a JSON endpoint refuses this body (400, 413,
// 415, 422): dropped, so that it does not hold up the ones behind it. target_failed: anything else,
// tried again with back-off. `why` says what was wrong.
enum class NotifyVerdict { taken, message_refused, target_failed };
// A robot's error page may echo the request: its key or token must not reach the log. Each
// key=, access_token= and sign= value becomes ***.
std::string redact_secrets(std::string_view text);
NotifyVerdict notification_verdict(NotifyTarget::Format format, const HttpAnswer& answer, std::string& why);

class Notifier {
public:
    Notifier(Store& store, const MonitorConfig& cfg, std::shared_ptr<spdlog::logger> log);
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    void start();
    void stop();
    // Something may have been queued: look now rather than at the next poll.
    void wake();

    // Prometheus text for /metrics: per target sent, failures, dropped, and what waits.
    std::string metrics_text();

private:
    // One target's sender: its thread, its back-off and its figures.
    struct Sender {
        explicit Sender(const NotifyTarget& t) : target(t) {}
        const NotifyTarget& target;
        WorkerThread worker;
        Backoff backoff{std::chrono::seconds(5), std::chrono::minutes(5)};
        int failing = 0;         // failed attempts in a row
        std::string last_error;  // of the last failed attempt
        // Not before: the back-off after a failure, the robots' rate limit after a success.
        std::chrono::steady_clock::time_point next_send{};
        std::chrono::steady_clock::time_point next_expiry_check{};  // give_up's bulk drop
        std::atomic<std::uint64_t> sent{0}, failures{0}, dropped{0};
    };

    void run(Sender& s);
    // Sends the target's next notification, if any; returns how long to wait before the next step.
    Duration step(Sender& s);

    Store& store_;
    const MonitorConfig& cfg_;
    std::shared_ptr<spdlog::logger> log_;
    std::vector<std::unique_ptr<Sender>> senders_;
};

}  // namespace kg::monitor
