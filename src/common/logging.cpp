#include "common/logging.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

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

// "<3>" before an error line, as journald reads a syslog priority at the start of a line from a
// service's stderr: `journalctl -p warning` then finds the gateway's warnings and errors.
class SyslogPriority final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        char text[] = "<6>";
        switch (msg.level) {
            case spdlog::level::critical:
                text[1] = '2';
                break;
            case spdlog::level::err:
                text[1] = '3';
                break;
            case spdlog::level::warn:
                text[1] = '4';
                break;
            case spdlog::level::info:
                text[1] = '6';
                break;
            default:
                text[1] = '7';
                break;
        }
        dest.append(text, text + 3);
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<SyslogPriority>();
    }
};

// Whether stderr is the journal's stream (systemd sets JOURNAL_STREAM to its device:inode), not a
// terminal or a file the same process's environment was handed down to.
bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (stream == nullptr) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return std::string(stream) == std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
                                      std::to_string(static_cast<unsigned long long>(st.st_ino));
}

}  // namespace

Logging::Logging(const std::string& level, bool json) : level_(spdlog::level::from_str(level)) {
    // stderr so that stdout stays free for tool output (--check-config, --version).
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    if (json) {
        sink->set_formatter(std::make_unique<JsonFormatter>());
    } else {
        // UTC, said with its Z, as the JSON lines and the MQTT messages are: a box set to Shanghai time
        // wrote local times without saying so, 8 hours from everything else the room sees.
        auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
        formatter->add_flag<SyslogPriority>('*');
        formatter->set_pattern(std::string(stderr_is_journal() ? "%*" : "") +
                               "%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ [%n] %v");
        sink->set_formatter(std::move(formatter));
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
