#include "publish/topics.hpp"

namespace kg::publish {

Topics::Topics(std::string prefix, std::string site)
    : base_(prefix.empty() ? site : prefix + "/" + site),
      availability_(base_ + "/availability"),
      gateway_(base_ + "/gateway"),
      events_(base_ + "/events") {}

std::string Topics::camera_state(const std::string& camera) const {
    return base_ + "/cameras/" + camera + "/state";
}

}  // namespace kg::publish
