// kitchen-monitor: the monitoring room's side. Parse the command line, load the config, run the
// monitor (MQTT ingest of every site, SQLite store, dashboard) until SIGINT/SIGTERM.

#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <functional>
#include <iostream>

#include "common/logging.hpp"
#include "kg/version.hpp"
#include "monitor/monitor.hpp"
#include "monitor/monitor_config.hpp"

namespace {

constexpr int kExitConfigError = 2;
constexpr auto kWatchdogInterval = std::chrono::seconds(5);

void print_errors(const kg::config::ConfigInvalid& e) {
    for (const auto& err : e.errors) std::cerr << err.to_string() << "\n";
    std::cerr << e.errors.size() << (e.errors.size() == 1 ? " error" : " errors")
              << " in the configuration\n";
}

int run(const kg::monitor::MonitorConfig& cfg) {
    kg::Logging logging(cfg.log_level, cfg.log_json);
    auto log = logging.get("main");
    log->info("kitchen-monitor {} starting with {}", kg::kVersion, cfg.source_file);
    for (const auto& w : cfg.warnings) log->warn("configuration: {}", w.to_string());

    boost::asio::io_context io;
    std::unique_ptr<kg::monitor::Monitor> monitor;
    try {
        monitor = std::make_unique<kg::monitor::Monitor>(cfg, logging, io);
    } catch (const std::exception& e) {
        log->error("cannot start: {}", e.what());
        return 1;
    }
    monitor->start();
    sd_notify(0, "READY=1");  // a no-op without systemd

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    boost::asio::steady_timer timer(io);
    std::function<void()> schedule_watchdog = [&] {
        timer.expires_after(kWatchdogInterval);
        timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            sd_notify(0, "WATCHDOG=1");  // the HTTP loop is alive
            schedule_watchdog();
        });
    };
    schedule_watchdog();
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        log->info("signal {} received, shutting down", signo);
        sd_notify(0, "STOPPING=1");
        timer.cancel();
        monitor->stop();
        io.stop();
    });
    io.run();
    monitor->stop();
    log->info("bye");
    return 0;
}

}  // namespace

// A function try block: an exception no part caught (std::bad_alloc, one a start throws) ends the
// process with its reason and an exit code, its objects destroyed in order (threads stopped), instead
// of std::terminate's abort.
int main(int argc, char** argv) try {
    CLI::App app{
        "kitchen-monitor: the monitoring room's side of kitchen-gateway (every site's alerts, closed-loop "
        "handling)"};
    std::string config_path;
    std::string check_path;
    bool version = false;
    app.add_option("-c,--config", config_path, "configuration file to run with");
    app.add_option("--check-config", check_path, "validate a configuration file and exit");
    app.add_flag("--version", version, "print the version and exit");
    CLI11_PARSE(app, argc, argv);

    if (version) {
        std::cout << "kitchen-monitor " << kg::kVersion << "\n";
        return 0;
    }
    if (!check_path.empty()) {
        try {
            const auto cfg = kg::monitor::load_monitor_config(check_path);
            std::cout << check_path << ": configuration OK (client " << cfg.mqtt.client_id << ", "
                      << cfg.http.operators.size() << " operators)\n";
            for (const auto& w : cfg.warnings) std::cout << "warning: " << w.to_string() << "\n";
            return 0;
        } catch (const kg::config::ConfigInvalid& e) {
            print_errors(e);
            return kExitConfigError;
        }
    }
    if (config_path.empty()) {
        std::cerr << "kitchen-monitor: give --config FILE (or --check-config FILE, --version)\n";
        return kExitConfigError;
    }
    kg::monitor::MonitorConfig cfg;
    try {
        cfg = kg::monitor::load_monitor_config(config_path);
    } catch (const kg::config::ConfigInvalid& e) {
        print_errors(e);
        return kExitConfigError;
    }
    return run(cfg);
} catch (const std::exception& e) {
    std::cerr << "kitchen-monitor: stopped on an error: " << e.what() << "\n";
    return 1;
}
