#include "monitor/broker_link.hpp"

namespace kg::monitor {

void BrokerLink::connecting(TimePoint now) {
    std::lock_guard lock(mutex_);
    state_ = BrokerLinkState{false, now, {}, std::nullopt};
}

void BrokerLink::up(TimePoint now) {
    std::lock_guard lock(mutex_);
    state_.connected = true;
    state_.since = now;
}

void BrokerLink::down(TimePoint now, std::string why) {
    std::lock_guard lock(mutex_);
    if (state_.connected) {
        state_.connected = false;
        state_.since = now;
    }
    state_.last_error = std::move(why);
    state_.last_error_at = now;
}

BrokerLinkState BrokerLink::state() const {
    std::lock_guard lock(mutex_);
    return state_;
}

}  // namespace kg::monitor
