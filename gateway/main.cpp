// kitchen-gateway: parse the command line, load the config, run the gateway until SIGINT/SIGTERM;
// SIGHUP or POST /api/reload restart it in-process with the configuration file as it is now.

#include <sys/select.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "app/detector_preflight.hpp"
#include "app/gateway.hpp"
#include "app/writable_places.hpp"
#include "common/backoff.hpp"
#include "common/env.hpp"
#include "common/file_limit.hpp"
#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "common/malloc_arenas.hpp"
#include "common/process_signals.hpp"
#include "common/watchdog_keeper.hpp"
#include "config/config_loader.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "ingest/login_gate.hpp"
#include "kg/version.hpp"
#include "vision/opencv_threads.hpp"
#include "web/http_server.hpp"
#include "web/kept_listeners.hpp"
#include "web/local_api.hpp"
#include "web/public_site.hpp"
#include "web/viewer_token.hpp"

namespace {

constexpr int kExitConfigError = 2;

void print_errors(const kg::config::ConfigInvalid& e) {
    for (const auto& err : e.errors) std::cerr << err.to_string() << "\n";
    std::cerr << e.errors.size() << (e.errors.size() == 1 ? " error" : " errors")
              << " in the configuration\n";
}

enum class Outcome { stop, reload };

// How a run ended; for a reload, the configuration that was checked when it was asked for, so
// that what runs next is what was validated, and its models are not loaded once more to check it.
struct RunEnd {
    Outcome outcome = Outcome::stop;
    std::optional<kg::config::Gateway> next;
};

// The gateway could not be built with a configuration (the log names why). Distinct from a failure
// while running: after a reload, the configuration that ran before is started again instead.
struct BuildFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One life of the gateway with one configuration: until a stop signal, or a reload (SIGHUP or
// POST /api/reload) with a configuration that has already been validated.
// `carry`: what the run before this one (a reload) handed over, taken here; filled again when this
// run ends for a reload.
// `fallback`: a configuration that ran before this one (this run is a reload) and is started again
// if this one cannot be built.
// `watchdog`: feeds systemd's watchdog from when a reload is asked for until the next run is ready.
// `last_reload`: how the last reload went, kept across runs for /metrics; this run's refusals and
// its own making are recorded in it.
// `logins`: the cameras' logins, kept across runs (a reload does not try a refused password again).
// `kept_listeners`: the HTTP sides' listening sockets, handed from a run that stops for a reload to
// the next.
// `process_started`, `first_run`: when the process started, and whether this is its first run
// (see Gateway::note_process_start).
RunEnd run_once(const kg::config::Gateway& cfg, const std::string& config_path,
                const kg::ProcessSignals& process_signals, kg::app::CarryOver& carry, bool fallback,
                kg::WatchdogKeeper& watchdog, std::optional<kg::app::Gateway::ReloadOutcome>& last_reload,
                kg::ingest::LoginGate& logins, kg::web::KeptListeners& kept_listeners,
                kg::TimePoint process_started, bool first_run) {
    kg::Logging logging(cfg.log.level, cfg.log.json);
    auto log = logging.get("main");
    log->info("kitchen-gateway {} starting with {}", kg::kVersion, cfg.source_file);
    // Each viewer holds a socket; past the limit, accepts fail (and are tried again every 500 ms).
    // What the gateway itself keeps open beside its viewers: cameras, files, the broker, the API.
    const std::size_t own_files = 128 + 8 * cfg.cameras.size();
    const std::size_t wanted =
        cfg.public_side.listen.empty() ? 0 : cfg.public_side.max_connections + own_files;
    // libmodbus waits with select(), which cannot take a descriptor of FD_SETSIZE (1024) or more:
    // with Modbus sensors the gateway stays under it, also when its unit or shell set the limit
    // higher.
    const bool modbus = std::any_of(cfg.sensors.begin(), cfg.sensors.end(), [](const auto& s) {
        return s.source.kind == kg::config::SensorSource::Kind::modbus;
    });
    const std::size_t allowed = modbus ? std::min<std::size_t>(wanted, FD_SETSIZE) : wanted;
    auto open_files = kg::raise_open_files_limit(allowed);
    if (modbus && open_files > FD_SETSIZE) {
        open_files = kg::lower_open_files_limit(FD_SETSIZE);
        log->info("open files limited to {} (Modbus sensors: select() takes at most {})", open_files,
                  FD_SETSIZE);
    }
    if (wanted > 0 && open_files > 0 && open_files < wanted) {
        const bool by_modbus = allowed < wanted;
        log->warn(
            "the process may open {} files ({}), fewer than public.max_connections ({}) and the gateway's "
            "own "
            "{}: {}",
            open_files, by_modbus ? "Modbus sensors: select() takes at most 1024" : "RLIMIT_NOFILE",
            cfg.public_side.max_connections, own_files,
            by_modbus ? "lower public.max_connections"
                      : "raise LimitNOFILE in its systemd unit, or lower public.max_connections");
    }

    // Building the gateway loads models and reference pictures: a failure there is a setup error
    // that names its cause, not a crash.
    std::unique_ptr<kg::app::Gateway> built;
    try {
        built = std::make_unique<kg::app::Gateway>(cfg, logging, &logins);
    } catch (const std::exception& e) {
        // The checks of a reload read the file and load the models, but some things only show when
        // the gateway is built (another gateway holding the outbox named now). Going back to what ran
        // keeps the cameras, sensors and alerts of a months-long unattended run instead of exiting
        // into a restart loop on the same file.
        if (fallback) {
            log->error("reload failed: cannot start with {}: {}; starting the previous configuration again",
                       cfg.source_file, e.what());
        } else {
            log->error("cannot start: {}", e.what());
        }
        throw BuildFailed(e.what());
    }
    kg::app::Gateway& gateway = *built;
    gateway.note_process_start(process_started, !first_run);
    try {
        gateway.start(std::exchange(carry, {}));
    } catch (const std::exception& e) {
        // What started is stopped, in order, as the gateway is destroyed. After a reload the configuration
        // that ran before starts again, as when the build fails; what the sensors carried over is
        // lost with this run (they start afresh).
        if (fallback) {
            log->error("reload failed: cannot start with {}: {}; starting the previous configuration again",
                       cfg.source_file, e.what());
        } else {
            log->error("cannot start with {}: {}", cfg.source_file, e.what());
        }
        built.reset();
        throw BuildFailed(e.what());
    }
    if (fallback) last_reload = kg::app::Gateway::ReloadOutcome{kg::Clock::now(), true};
    if (last_reload) gateway.note_reload(*last_reload);
    // Without systemd (no NOTIFY_SOCKET) these are no-ops.
    sd_notify(0, "READY=1");
    watchdog.end();  // the supervision tick feeds it from here
    sd_notify(0, "WATCHDOG=1");

    boost::asio::io_context io;
    Outcome outcome = Outcome::stop;
    std::optional<kg::config::Gateway> next;
    boost::asio::steady_timer timer(io);
    boost::asio::steady_timer reload_timer(io);
    std::unique_ptr<kg::web::HttpServer> api;
    std::unique_ptr<kg::web::HttpServer> public_side;
    auto shut = [&](Outcome why) {
        outcome = why;
        sd_notify(0, why == Outcome::reload ? "RELOADING=1" : "STOPPING=1");
        timer.cancel();
        // At a reload the ports stay open for the next run (KeptListeners): asked meanwhile, a
        // parent's player waits for it instead of being refused and starting its stream over.
        if (why == Outcome::reload) {
            if (api) kept_listeners.keep("api", cfg.api.listen, api->release_listening());
            if (public_side)
                kept_listeners.keep("public", cfg.public_side.listen, public_side->release_listening());
        } else {
            if (api) api->stop();
            if (public_side) public_side->stop();
        }
        io.stop();
    };
    // A reload is accepted only if the file on disk is valid now: a typo must not take the
    // running gateway down. Returns the errors, or nothing when the reload goes ahead.
    bool reloading = false;  // a reload was accepted: the watchdog is fed until the next run is ready
    auto reload = [&]() -> std::optional<std::string> {
        // From here the supervision tick stops: the checks load every model on this thread.
        watchdog.begin();
        std::optional<kg::config::Gateway> checked;
        try {
            checked = kg::app::load_and_check(config_path);
        } catch (const kg::config::ConfigInvalid& e) {
            watchdog.end();
            last_reload = kg::app::Gateway::ReloadOutcome{kg::Clock::now(), false};
            gateway.note_reload(*last_reload);
            if (reloading) {
                // A reload accepted a moment ago, not yet made: the file changed since, and what runs
                // next must be the configuration of before or the file's, never a copy of the file
                // that is neither (a review: the refusal was logged, then the earlier copy started).
                reload_timer.cancel();
                next.reset();
                reloading = false;
                log->error("the reload accepted before is not made either: the file changed since");
            }
            std::string text;
            bool unset = false;
            for (const auto& err : e.errors) {
                text += err.to_string() + "\n";
                unset |= err.message.rfind("environment variable", 0) == 0;
            }
            // Each said here too: a SIGHUP has no one to answer, and the log was all an operator
            // had ("1 error(s)", and not which).
            log->error("reload refused: {} error(s) in {}; still running the previous configuration",
                       e.errors.size(), config_path);
            for (const auto& err : e.errors) log->error("  {}", err.to_string());
            if (unset) {
                log->error(
                    "  the gateway's environment is the one it started with: a variable added since (to "
                    "secrets.env) needs a restart, not a reload (systemctl restart kitchen-gateway)");
            }
            return text;
        } catch (...) {
            if (!reloading) watchdog.end();
            throw;
        }
        next = std::move(checked);
        reloading = true;
        log->info("reloading {}", config_path);
        // A moment's grace, so the answer to POST /api/reload reaches the client first.
        reload_timer.expires_after(std::chrono::milliseconds(300));
        reload_timer.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) shut(Outcome::reload);
        });
        return std::nullopt;
    };

    // The local HTTP side runs on this thread, as the supervision does: it reads the gateway's
    // state without locks. A port already taken (a process of before still closing it, another
    // service) is logged and tried again with back-off up to a minute: left down, the parents'
    // page would stay down until the next restart, which on an unattended box may be months.
    struct Listener {
        std::string side;  // Gateway::note_listener's
        std::string what;
        std::shared_ptr<spdlog::logger> log;
        std::function<void()> open;  // throws when the address cannot be bound
        std::unique_ptr<boost::asio::steady_timer> retry;
        kg::Backoff backoff{std::chrono::seconds(1), std::chrono::seconds(60)};
        bool warned = false;
    };
    std::vector<std::unique_ptr<Listener>> listeners;
    std::function<void(Listener&)> try_open = [&](Listener& l) {
        try {
            l.open();
            gateway.note_listener(l.side, l.what, "");
            if (l.warned) l.log->info("{} started after all", l.what);
        } catch (const std::exception& e) {
            gateway.note_listener(l.side, l.what, e.what());
            const auto wait = l.backoff.next();
            // Logged as an error once, then quietly: a port taken for good must not flood the log.
            if (!l.warned) {
                l.log->error("{} not started: {}; trying again, with back-off up to a minute", l.what,
                             e.what());
            } else {
                l.log->debug("{} still not started: {}", l.what, e.what());
            }
            l.warned = true;
            l.retry->expires_after(wait);
            l.retry->async_wait([&try_open, &l](const boost::system::error_code& ec) {
                if (!ec) try_open(l);
            });
        }
    };
    if (!cfg.api.listen.empty()) {
        auto api_log = logging.get("api");
        listeners.push_back(std::make_unique<Listener>(Listener{
            "api", "local API", api_log,
            [&, api_log] {
                kg::web::Limits limits;
                limits.header_timeout = cfg.api.header_timeout;
                limits.idle_timeout = cfg.api.idle_timeout;
                api = std::make_unique<kg::web::HttpServer>(
                    io, cfg.api.listen, limits, kg::web::local_api(gateway, cfg.api.token, api_log, reload),
                    api_log, kept_listeners.take("api", cfg.api.listen));
                api->start();
                api_log->info("local API on {} (port {}){}", cfg.api.listen, api->port(),
                              cfg.api.token.empty() ? "; /api is off: no api.token" : "");
            },
            std::make_unique<boost::asio::steady_timer>(io)}));
    }
    if (!cfg.public_side.listen.empty()) {
        auto public_log = logging.get("public");
        listeners.push_back(std::make_unique<Listener>(Listener{
            "public", "public side", public_log,
            [&, public_log] {
                auto routes = kg::web::public_site(gateway, cfg.public_side, public_log);
                public_side = std::make_unique<kg::web::HttpServer>(
                    io, cfg.public_side.listen, kg::web::public_limits(cfg.public_side), routes.handler,
                    public_log, kept_listeners.take("public", cfg.public_side.listen));
                if (routes.stream_handler) public_side->set_stream_handler(routes.stream_handler);
                public_side->start();
                public_log->info(
                    "public side on {} (port {}){}", cfg.public_side.listen, public_side->port(),
                    cfg.public_side.token_secret.empty() ? "" : "; stream URLs need viewer tokens");
            },
            std::make_unique<boost::asio::steady_timer>(io)}));
    }
    // Before any side binds: a kept socket on an address this run does not listen on for its side
    // (the two sides' ports swapped) would hold the other side's port.
    kept_listeners.drop_unless("api", cfg.api.listen);
    kept_listeners.drop_unless("public", cfg.public_side.listen);
    for (auto& l : listeners) try_open(*l);
    kept_listeners.clear();  // a side this run does not open: its port closes now
    kg::SignalWatch signals(io, process_signals);
    kg::LogThrottle tick_failures;
    std::function<void()> schedule_tick = [&] {
        timer.expires_after(kg::app::Gateway::kTickInterval);
        timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            // A tick that throws must not take the daemon down with it (out of io.run(), then
            // again in ~Gateway: std::terminate, a restart loop): said, and tried at the next.
            try {
                gateway.tick();
            } catch (const std::exception& e) {
                if (const auto n = tick_failures.pass())
                    log->error("supervision tick failed ({} time(s) since the last line): {}", n, e.what());
            }
            sd_notify(0, "WATCHDOG=1");  // the supervision loop is alive
            schedule_tick();
        });
    };
    schedule_tick();
    // A SIGHUP that comes while this run stops for a reload stays pending and reloads the next run.
    signals.start([&](int signo) {
        if (signo == SIGHUP) {
            reload();
            return;
        }
        log->info("signal {} received, shutting down", signo);
        shut(Outcome::stop);
    });
    io.run();

    gateway.stop(outcome == Outcome::reload ? &carry : nullptr,
                 outcome == Outcome::reload && next ? &*next : nullptr);
    log->info(outcome == Outcome::reload ? "stopped for the reload" : "bye");
    return {outcome, outcome == Outcome::reload ? std::move(next) : std::nullopt};
}

int run(kg::config::Gateway cfg, const std::string& config_path, const kg::ProcessSignals& signals) {
    kg::ingest::initialise_ffmpeg();
    kg::vision::run_opencv_on_callers_threads();
    // Under systemd with WatchdogSec, fed twice an interval. A reload longer than kReloadLongest is
    // taken for hung, and left to the watchdog.
    constexpr auto kReloadLongest = std::chrono::minutes(5);
    std::uint64_t watchdog_usec = 0;
    const auto every = std::chrono::milliseconds(
        sd_watchdog_enabled(0, &watchdog_usec) > 0 ? static_cast<std::int64_t>(watchdog_usec / 2000) : 0);
    kg::WatchdogKeeper watchdog([] { sd_notify(0, "WATCHDOG=1"); }, every, kReloadLongest);
    // Before `carry`, which outlives none of it: the camera inputs a reload hands over run ingest
    // threads that hold the logins' passes (a review: a reload whose fallback also failed left
    // them in `carry` at the return, and their passes went back to a destroyed gate).
    kg::ingest::LoginGate logins;
    kg::app::CarryOver carry;
    // The configuration of the run before a reload, while the reloaded one has not started.
    std::optional<kg::config::Gateway> previous;
    std::optional<kg::app::Gateway::ReloadOutcome> last_reload;
    kg::web::KeptListeners kept_listeners;
    const auto process_started = kg::Clock::now();
    bool first_run = true;
    for (;;) {
        RunEnd end;
        try {
            end = run_once(cfg, config_path, signals, carry, previous.has_value(), watchdog, last_reload,
                           logins, kept_listeners, process_started, first_run);
            first_run = false;
        } catch (const BuildFailed&) {
            // Logged by run_once. What the stopped run handed over is still in `carry` if the run
            // that failed was not built; one that failed to start took it with it.
            if (!previous) return 1;
            // Taken by the failed start, what was handed over is in the outbox's record of open
            // events alone: the next start ends it, as a stop's (not a crash's) ends.
            if (!carry.from_a_run) carry.hand_over_lost = true;
            last_reload = kg::app::Gateway::ReloadOutcome{kg::Clock::now(), false};
            cfg = std::move(*std::exchange(previous, std::nullopt));
            continue;
        } catch (const std::exception& e) {
            // The run's own log is gone with it: said here, so that an exit is never without a reason.
            std::cerr << "kitchen-gateway: stopped on an error: " << e.what() << "\n";
            return 1;
        }
        previous.reset();
        if (end.outcome == Outcome::stop) return 0;
        if (end.next) previous = std::exchange(cfg, std::move(*end.next));
    }
}

// systemd reads EnvironmentFile= again for each command it starts, so `systemctl reload` checks the
// file with the new secrets.env, but the SIGHUP makes the gateway read it with the environment it
// started with: a rotated broker password was accepted and never used (the next connection after a
// broker restart, weeks later, refused for good), and a variable added since refused the reload
// with "configuration OK" printed. Both are refused here, before the signal, naming the variables.
int check_reload_environment(const kg::config::Gateway& cfg, const std::string& path, pid_t pid) {
    const auto theirs = kg::process_environment(pid);
    if (!theirs) {
        std::cout << "warning: cannot read the environment of process " << pid
                  << ": whether the variables the file uses are the ones it runs with is not known\n";
        return 0;
    }
    std::vector<std::string> changed;
    for (const auto& name : cfg.environment) {
        const char* mine = std::getenv(name.c_str());
        const auto it = theirs->find(name);
        if ((mine == nullptr) != (it == theirs->end()) || (mine != nullptr && it->second != mine))
            changed.push_back(name);
    }
    if (changed.empty()) return 0;
    std::string names;
    for (const auto& name : changed) names += (names.empty() ? "" : ", ") + name;
    std::cerr << path << ": " << names << (changed.size() == 1 ? " is" : " are")
              << " set otherwise here than in the running gateway (pid " << pid
              << "), whose environment a reload does not change (secrets.env changed since it started?): "
                 "restart it instead (systemctl restart kitchen-gateway)\n";
    return kExitConfigError;
}

}  // namespace

// A function try block: an exception no part caught (std::bad_alloc, one a start throws) ends the
// process with its reason and an exit code, its objects destroyed in order (threads stopped), instead
// of std::terminate's abort.
int main(int argc, char** argv) try {
    kg::bound_malloc_arenas();  // first: before any thread exists
    CLI::App app{
        "kitchen-gateway: bright-kitchen edge gateway (cameras and sensors in, alerts out over MQTT)"};
    std::string config_path;
    std::string check_path;
    std::string token_camera;
    long token_ttl = 24 * 3600;
    pid_t reloading_pid = 0;
    bool version = false;
    app.add_option("-c,--config", config_path, "configuration file to run with");
    app.add_option("--check-config", check_path, "validate a configuration file and exit");
    app.add_option("--reloading", reloading_pid,
                   "with --check-config: the running gateway (systemd's $MAINPID) the file is for; refused "
                   "if a variable the file uses (${NAME}) is set otherwise here than in that process, which "
                   "keeps its environment through a reload")
        ->check(CLI::PositiveNumber);
    app.add_flag("--version", version, "print the version and exit");
    app.add_option(
        "--make-token", token_camera,
        "print a viewer token for a public camera ('*': every public camera) and exit; needs --config "
        "with public.token_secret");
    app.add_option("--ttl", token_ttl, "validity of --make-token in seconds (default 86400)")
        ->check(CLI::PositiveNumber);
    CLI11_PARSE(app, argc, argv);

    if (version) {
        std::cout << "kitchen-gateway " << kg::kVersion << "\n";
        return 0;
    }
    if (!check_path.empty()) {
        try {
            const auto cfg = kg::app::load_and_check(check_path);
            // The reload's own refusal first: "configuration OK" and then a refusal read as both.
            if (reloading_pid > 0) {
                if (const int refused = check_reload_environment(cfg, check_path, reloading_pid))
                    return refused;
            }
            std::cout << check_path << ": configuration OK (site " << cfg.site.id << ", "
                      << cfg.cameras.size() << " cameras, " << cfg.sensors.size() << " sensors)\n";
            for (const auto& doubt : kg::config::doubts(cfg)) std::cout << "warning: " << doubt << "\n";
            // As this user: under systemd, the service's own (ExecStartPre), in its sandbox.
            for (const auto& place : kg::app::unwritable_places(cfg))
                std::cout << "warning: " << place << " (checked as uid " << ::geteuid() << ")\n";
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
    // Before anything can start a thread (the detector preflight loads models): every thread must
    // inherit the blocked signals, or a SIGHUP between two runs would kill the daemon.
    std::optional<kg::ProcessSignals> signals;
    try {
        signals.emplace();
    } catch (const std::exception& e) {
        std::cerr << "kitchen-gateway: cannot take the stop and reload signals: " << e.what() << "\n";
        return 1;
    }
    kg::config::Gateway cfg;
    try {
        cfg = kg::app::load_and_check(config_path);
    } catch (const kg::config::ConfigInvalid& e) {
        print_errors(e);
        return kExitConfigError;
    }
    if (!token_camera.empty()) {
        if (cfg.public_side.token_secret.empty()) {
            std::cerr << config_path << ": public.token_secret is not set: stream URLs need no token\n";
            return kExitConfigError;
        }
        // A misspelt id, or a camera that is not public, made a token that opens nothing, and the
        // parent holding it got 403 or 404 with no hint why.
        std::string public_ids;
        bool known = token_camera == "*";
        for (const auto& c : cfg.cameras) {
            if (!c.is_public || !c.enabled) continue;
            public_ids += (public_ids.empty() ? "" : ", ") + c.id;
            known |= c.id == token_camera;
        }
        if (!known) {
            std::cerr << config_path << ": '" << token_camera
                      << "' is not a public camera of this configuration ("
                      << (public_ids.empty() ? "it has none" : "public: " + public_ids)
                      << "; '*' signs a token for all of them)\n";
            return kExitConfigError;
        }
        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        std::cout << kg::web::sign_viewer_token(cfg.public_side.token_secret, token_camera, now + token_ttl)
                  << "\n";
        return 0;
    }
    return run(std::move(cfg), config_path, *signals);
} catch (const std::exception& e) {
    std::cerr << "kitchen-gateway: stopped on an error: " << e.what() << "\n";
    return 1;
}
