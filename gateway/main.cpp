// kitchen-gateway: parse the command line, load the config, run the gateway until SIGINT/SIGTERM.

#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <functional>
#include <iostream>

#include "app/gateway.hpp"
#include "common/logging.hpp"
#include "config/config_loader.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "kg/version.hpp"
#include "web/http_server.hpp"
#include "web/local_api.hpp"
#include "web/public_site.hpp"

namespace {

constexpr int kExitConfigError = 2;

void print_errors(const kg::config::ConfigInvalid& e) {
    for (const auto& err : e.errors) std::cerr << err.to_string() << "\n";
    std::cerr << e.errors.size() << (e.errors.size() == 1 ? " error" : " errors")
              << " in the configuration\n";
}

int run(const kg::config::Gateway& cfg) {
    kg::Logging logging(cfg.log.level, cfg.log.json);
    auto log = logging.get("main");
    log->info("kitchen-gateway {} starting with {}", kg::kVersion, cfg.source_file);

    kg::ingest::initialise_ffmpeg();

    // Building the gateway loads models and reference pictures: a failure there is a setup error
    // that names its cause, not a crash.
    std::unique_ptr<kg::app::Gateway> built;
    try {
        built = std::make_unique<kg::app::Gateway>(cfg, logging);
    } catch (const std::exception& e) {
        log->error("cannot start: {}", e.what());
        return 1;
    }
    kg::app::Gateway& gateway = *built;
    gateway.start();
    // Without systemd (no NOTIFY_SOCKET) these are no-ops.
    sd_notify(0, "READY=1");

    boost::asio::io_context io;
    // The local HTTP side runs on this thread, as the supervision does: it reads the gateway's
    // state without locks. A port already taken is an error in the log, not a reason to stop.
    std::unique_ptr<kg::web::HttpServer> api;
    if (!cfg.api.listen.empty()) {
        kg::web::Limits limits;
        limits.header_timeout = cfg.api.header_timeout;
        limits.idle_timeout = cfg.api.idle_timeout;
        auto api_log = logging.get("api");
        try {
            api = std::make_unique<kg::web::HttpServer>(
                io, cfg.api.listen, limits, kg::web::local_api(gateway, cfg.api.token, api_log), api_log);
            api->start();
            api_log->info("local API on {} (port {}){}", cfg.api.listen, api->port(),
                          cfg.api.token.empty() ? "; /api is off: no api.token" : "");
        } catch (const std::exception& e) {
            api_log->error("local API not started: {}", e.what());
        }
    }
    std::unique_ptr<kg::web::HttpServer> public_side;
    if (!cfg.public_side.listen.empty()) {
        auto public_log = logging.get("public");
        try {
            public_side =
                std::make_unique<kg::web::HttpServer>(io, cfg.public_side.listen, kg::web::Limits{},
                                                      kg::web::public_site(gateway, public_log), public_log);
            public_side->start();
            public_log->info("public side on {} (port {})", cfg.public_side.listen, public_side->port());
        } catch (const std::exception& e) {
            public_log->error("public side not started: {}", e.what());
        }
    }
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    boost::asio::steady_timer timer(io);
    std::function<void()> schedule_tick = [&] {
        timer.expires_after(kg::app::Gateway::kTickInterval);
        timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            gateway.tick();
            sd_notify(0, "WATCHDOG=1");  // the supervision loop is alive
            schedule_tick();
        });
    };
    schedule_tick();
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        log->info("signal {} received, shutting down", signo);
        sd_notify(0, "STOPPING=1");
        timer.cancel();
        if (api) api->stop();
        if (public_side) public_side->stop();
        io.stop();
    });
    io.run();

    gateway.stop();
    log->info("bye");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "kitchen-gateway: bright-kitchen edge gateway (cameras and sensors in, alerts out over MQTT)"};
    std::string config_path;
    std::string check_path;
    bool version = false;
    app.add_option("-c,--config", config_path, "configuration file to run with")->check(CLI::ExistingFile);
    app.add_option("--check-config", check_path, "validate a configuration file and exit");
    app.add_flag("--version", version, "print the version and exit");
    CLI11_PARSE(app, argc, argv);

    if (version) {
        std::cout << "kitchen-gateway " << kg::kVersion << "\n";
        return 0;
    }
    if (!check_path.empty()) {
        try {
            const auto cfg = kg::config::load_file(check_path);
            std::cout << check_path << ": configuration OK (site " << cfg.site.id << ", "
                      << cfg.cameras.size() << " cameras)\n";
            return 0;
        } catch (const kg::config::ConfigInvalid& e) {
            print_errors(e);
            return kExitConfigError;
        }
    }
    if (config_path.empty()) {
        std::cerr << "kitchen-gateway: give --config FILE (or --check-config FILE, --version)\n";
        return kExitConfigError;
    }
    kg::config::Gateway cfg;
    try {
        cfg = kg::config::load_file(config_path);
    } catch (const kg::config::ConfigInvalid& e) {
        print_errors(e);
        return kExitConfigError;
    }
    return run(cfg);
}
