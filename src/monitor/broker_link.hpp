#pragma once
// The room's own connection to the central broker. Every site's state reaches the room through it:
// while it is down the room hears nothing, and a site that says nothing looks exactly like a room
// that hears nothing. So the sites' states are judged with it (api.hpp, add_site_state): not known
// while it is down, and a site's silence counted only from when the room could hear again.

#include <mutex>
#include <optional>
#include <string>

#include "common/time.hpp"

namespace kg::monitor {

struct BrokerLinkState {
    bool connected = false;
    // When it came up (connected), or when it went down: lost, or the monitor began connecting.
    TimePoint since{};
    // Why the last attempt failed or the last connection was lost; empty until one did.
    std::string last_error;
    std::optional<TimePoint> last_error_at;
};

class BrokerLink {
public:
    // The monitor begins connecting (at start): down since `now`, no error yet.
    void connecting(TimePoint now);
    // Connected with the subscriptions granted: from now on the sites' messages come.
    void up(TimePoint now);
    // An attempt failed or the connection was lost. `since` stays at the first failure of an outage:
    // the room has been deaf since then, however many attempts failed after it.
    void down(TimePoint now, std::string why);
    BrokerLinkState state() const;

private:
    mutable std::mutex mutex_;
    // Down since it was made (the process began) until the MqttClient says otherwise.
    BrokerLinkState state_{false, Clock::now(), {}, std::nullopt};
};

}  // namespace kg::monitor
