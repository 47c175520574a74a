#pragma once
// Structured logs: one sink set per process, one named logger per component ("gateway",
// "mqtt", "cam:<id>"), so every line says which camera it is about.

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

namespace kg {

class Logging {
public:
    // level: trace|debug|info|warn|error; json: one JSON object per line (for log shippers).
    Logging(const std::string& level, bool json);

    std::shared_ptr<spdlog::logger> get(const std::string& component) const;

    // A logger that discards everything, for tests and tools.
    static std::shared_ptr<spdlog::logger> null_logger();

private:
    std::vector<spdlog::sink_ptr> sinks_;
    spdlog::level::level_enum level_;
};

}  // namespace kg
