#include "common/logging.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/time.hpp"

namespace kg {
namespace {

// spdlog's pattern formatter cannot escape the message, so JSON lines are built here.
class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        nlohmann::json line = {
            {"time", iso8601_utc(std::chrono::time_point_cast<Clock::duration>(msg.time))},
            {"level", spdlog::level::to_string_view(msg.level).data()},
            {"component", std::string(msg.logger_name.data(), msg.logger_name.size())},
            {"msg", std::string(msg.payload.data(), msg.payload.size())},
        };
        const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        dest.append(text.data(), text.data() + text.size());
    }
    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

Logging::Logging(const std::string& level, bool json) : level_(spdlog::level::from_str(level)) {
    // stderr so that stdout stays free for tool output (--check-config, --version).
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    if (json) {
        sink->set_formatter(std::make_unique<JsonFormatter>());
    } else {
        sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
    }
    sinks_.push_back(std::move(sink));
}

std::shared_ptr<spdlog::logger> Logging::get(const std::string& component) const {
    auto logger = std::make_shared<spdlog::logger>(component, sinks_.begin(), sinks_.end());
    logger->set_level(level_);
    logger->flush_on(spdlog::level::info);
    return logger;
}

std::shared_ptr<spdlog::logger> Logging::null_logger() {
    return std::make_shared<spdlog::logger>("null", std::make_shared<spdlog::sinks::null_sink_mt>());
}

}  // namespace kg
