#include "publish/topics.hpp"

namespace kg::publish {

Topics::Topics(const std::string& prefix, const std::string& site)
    : base_(prefix.empty() ? site : prefix + "/" + site),
      availability_(base_ + "/availability"),
      gateway_(base_ + "/gateway"),
      events_(base_ + "/events"),
      replay_(base_ + "/replay"),
      lost_(base_ + "/lost") {}

std::string Topics::camera_state(const std::string& camera) const {
    return base_ + "/cameras/" + camera + "/state";
}

std::string Topics::event_snapshot(const std::string& event_id) const {
    return events_ + "/" + event_id + "/snapshot";
}

std::string Topics::event_clip(const std::string& event_id) const {
    return events_ + "/" + event_id + "/clip";
}

std::string Topics::sensor_state(const std::string& sensor) const {
    return base_ + "/sensors/" + sensor + "/state";
}

std::string Topics::sensor_rollup(const std::string& sensor) const {
    return base_ + "/sensors/" + sensor + "/rollup";
}

}  // namespace kg::publish
