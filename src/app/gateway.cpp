#include "app/gateway.hpp"

#include <filesystem>
#include <thread>

#include "publish/payloads.hpp"

namespace kg::app {
namespace {

constexpr auto kShutdownDrain = std::chrono::seconds(3);
constexpr auto kExpiryInterval = std::chrono::minutes(1);

int analysis_threads(int configured) {
    if (configured > 0) return configured;
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, cores - 1);
}

// Opens the durable outbox; if its file cannot be used, events still flow through memory, loudly.
std::unique_ptr<outbox::SqliteStore> open_store(const config::Outbox& cfg, spdlog::logger& log) {
    const outbox::SqliteStore::Limits limits{cfg.max_messages, cfg.max_bytes};
    try {
        if (cfg.path != ":memory:") {
            std::filesystem::create_directories(std::filesystem::path(cfg.path).parent_path());
        }
        auto store = std::make_unique<outbox::SqliteStore>(cfg.path, limits);
        log.info("outbox {}: {} messages waiting", cfg.path, store->size());
        return store;
    } catch (const std::exception& e) {
        log.error("{}; events will be kept in memory only and lost on a restart", e.what());
        return std::make_unique<outbox::SqliteStore>(":memory:", limits);
    }
}

std::map<std::string, rules::Schedule> make_schedules(const std::vector<config::Schedule>& configured) {
    std::map<std::string, rules::Schedule> out;
    for (const auto& c : configured) {
        rules::Schedule s{c.name, c.days, {}, c.on_holidays, c.inverted};
        for (const auto& t : c.times) s.windows.push_back(rules::parse_window(t));  // validated by the loader
        out.emplace(c.name, std::move(s));
    }
    return out;
}

}  // namespace

Gateway::Gateway(config::Gateway cfg, const Logging& logging)
    : cfg_(std::move(cfg)),
      log_(logging.get("gateway")),
      topics_(cfg_.mqtt.topic_prefix, cfg_.site.id),
      calendar_(cfg_.site.timezone, cfg_.site.holidays),
      schedules_(make_schedules(cfg_.schedules)),
      link_(cfg_.mqtt, topics_.availability(), logging.get("mqtt")),
      store_(open_store(cfg_.outbox, *log_)),
      outbox_(*store_, link_, topics_, cfg_.site.id, logging.get("outbox")),
      evidence_(std::make_unique<evidence::EvidenceStore>(cfg_.evidence.path, cfg_.evidence.max_bytes,
                                                          cfg_.evidence.max_age)),
      site_{cfg_, calendar_, schedules_, evidence_.get(), outbox_, ids_, logging},
      pool_(analysis_threads(cfg_.analysis_threads)) {
    for (const auto& camera : cfg_.cameras) {
        if (!camera.enabled) continue;
        cameras_.push_back(std::make_unique<CameraPipeline>(camera, pool_, site_));
    }
    last_online_.assign(cameras_.size(), false);
    if (!cfg_.sensors.empty()) sensors_ = std::make_unique<SensorHub>(site_, outbox_, link_, topics_);
    link_.on_connected([this] {
        link_.publish(topics_.gateway(), publish::gateway_payload(cfg_, started_at_, Clock::now()), 1, true);
        republish_ = true;  // the next tick republishes every camera's retained state
    });
}

Gateway::~Gateway() { stop(); }

void Gateway::start() {
    started_at_ = Clock::now();
    log_->info("site {} ({}): {} cameras, {} sensors, {} analysis threads; evidence in {} ({} files, {} MiB)",
               cfg_.site.id, cfg_.site.name, cameras_.size(), cfg_.sensors.size(), pool_.size(),
               cfg_.evidence.path, evidence_->files(), evidence_->bytes() >> 20);
    link_.start();
    outbox_.start();
    pool_.start();
    if (sensors_) sensors_->start();
    for (auto& camera : cameras_) camera->start();
    running_ = true;
}

void Gateway::tick() {
    if (!running_) return;
    const auto now = Clock::now();
    const bool due = republish_.exchange(false) || now - last_state_publish_ >= cfg_.mqtt.state_interval;
    if (due) last_state_publish_ = now;
    publish_states(now, due);
    if (sensors_) sensors_->tick(now, due);
    if (now - last_expiry_ >= kExpiryInterval) {
        last_expiry_ = now;
        evidence_->expire(now);
    }
}

void Gateway::publish_states(TimePoint now, bool due) {
    for (std::size_t i = 0; i < cameras_.size(); ++i) {
        const auto state = cameras_[i]->supervise(now);
        // A change of online state is reported at once, not at the next interval.
        if (!due && state.online == last_online_[i]) continue;
        last_online_[i] = state.online;
        link_.publish(topics_.camera_state(state.camera->id),
                      publish::camera_state_payload(state, cfg_.site.id, now), 1, true);
    }
}

void Gateway::stop() {
    if (!running_) return;
    running_ = false;
    log_->info("stopping");
    for (auto& camera : cameras_) camera->stop();
    if (sensors_) sensors_->stop();
    pool_.stop();
    outbox_.stop(kShutdownDrain);
    link_.stop();
    log_->info("stopped");
}

}  // namespace kg::app
