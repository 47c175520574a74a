#include "app/sensor_hub.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "config/config_loader.hpp"
#include "publish/payloads.hpp"

namespace kg::app {

namespace {

std::string mqtt_client_id(const config::Gateway& cfg) { return cfg.mqtt.client_id + "-sensors"; }

bool has_mqtt_sensors(const config::Gateway& cfg) {
    return std::any_of(cfg.sensors.begin(), cfg.sensors.end(), [](const config::Sensor& s) {
        return s.source.kind == config::SensorSource::Kind::mqtt;
    });
}

}  // namespace

bool continues_events(const config::Gateway& now, const config::Gateway& next) {
    return now.site.id == next.site.id && now.mqtt.topic_prefix == next.mqtt.topic_prefix &&
           now.outbox.path == next.outbox.path;
}

bool continues_presence(const config::Gateway& now, const config::Gateway& next) {
    // The whole connection: one the broker may refuse now (another client id against its
    // clientid_prefixes, a new certificate) would leave the stop's silence, `online`, for good.
    return continues_events(now, next) && now.mqtt.url == next.mqtt.url &&
           now.mqtt.client_id == next.mqtt.client_id && now.mqtt.username == next.mqtt.username &&
           now.mqtt.password == next.mqtt.password && now.mqtt.tls == next.mqtt.tls;
}

bool reads_alike(const config::Sensor& before, const config::Sensor& after) {
    return before.source == after.source && before.unit == after.unit;
}

void end_handed_over(events::EventSink& sink, CarryOver& carried) {
    for (auto& [id, c] : carried.sensors) {
        for (const auto& h : c.open) sink.submit(h.end);
        c.open.clear();
    }
}

SensorHub::SensorHub(const SiteContext& site, outbox::Outbox& outbox, publish::MqttLink& link,
                     const publish::Topics& topics)
    : site_(site), outbox_(outbox), link_(link), topics_(topics), log_(site.logging.get("sensors")) {
    const auto& cfg = site_.config;
    const auto now = Clock::now();
    const auto steady_now = std::chrono::steady_clock::now();
    // By connection, not by how the device is written: two connections to a device that serves one
    // client at a time leave one of them unread, and two on one serial line garble each other.
    std::map<std::string, std::vector<const config::Sensor*>> devices;
    for (const auto& s : cfg.sensors) {
        entries_[s.id].rules = std::make_unique<sensors::SensorRules>(s, site_.calendar, site_.schedules,
                                                                      site_.ids, now, steady_now);
        if (s.source.kind == config::SensorSource::Kind::mqtt) {
            mqtt_sensors_.push_back(&s);
        } else {
            devices[config::modbus_connection(s.source.device)].push_back(&s);
        }
    }
    auto handler = [this](const sensors::Reading& r) { on_reading(r); };
    for (auto& [connection, list] : devices) {
        // Connected as its first sensor writes it: a by-id path follows the adapter to another tty.
        modbus_.push_back(
            std::make_unique<sensors::ModbusPoller>(list.front()->source.device, list, handler, log_));
    }
}

SensorHub::~SensorHub() {
    // A destructor that throws ends the process (std::terminate): what stop() could not finish
    // (out of memory building the last states) is said, and the rest of the teardown goes on.
    try {
        stop();
    } catch (const std::exception& e) {
        log_->error("sensors: stop failed: {}", e.what());
    }
}

void SensorHub::start() {
    // Said here, after adopt(): a reload within a window the previous run judged goes on judging it.
    for (const auto& [id, e] : entries_) {
        if (e.rules->skips_current_window()) {
            log_->info(
                "sensor {}: started within its disinfection window ({}): a cycle before now is unknown, "
                "so this window is not judged",
                id, e.rules->sensor().disinfection->schedule);
        }
    }
    if (!mqtt_ && !mqtt_sensors_.empty()) {
        const auto& cfg = site_.config;
        mqtt_ = std::make_unique<sensors::MqttSensorInput>(
            cfg.sensors_broker(), mqtt_client_id(cfg), mqtt_sensors_,
            [this](const sensors::Reading& r) { on_reading(r); }, log_);
    }
    if (mqtt_) mqtt_->start();
    for (auto& m : modbus_) m->start();
}

// NOLINTNEXTLINE(performance-unnecessary-value-param): moved in; changed through the bindings below
void SensorHub::adopt(CarryOver carried) {
    if (auto input = std::move(carried.mqtt_input)) {
        // The last run's connection, if it is this run's too (a run started again after a failed
        // reload may read another broker); else let go of here, before start() connects under the
        // same client id.
        const auto& cfg = site_.config;
        if (!mqtt_sensors_.empty() && input->same_connection(cfg.sensors_broker(), mqtt_client_id(cfg))) {
            input->attach(
                mqtt_sensors_, [this](const sensors::Reading& r) { on_reading(r); }, log_);
            mqtt_ = std::move(input);
        }
    }
    std::lock_guard order(deliver_mutex_);
    std::vector<events::Event> out;
    {
        std::lock_guard lock(mutex_);
        const auto steady_now = std::chrono::steady_clock::now();
        for (auto& [id, c] : carried.sensors) {
            auto it = entries_.find(id);
            const bool same = it != entries_.end() && reads_alike(c.config, it->second.rules->sensor());
            if (!same) {
                if (auto partial = c.roller.take()) publish_rollup(c.config, *partial);
                for (auto& h : c.open) out.push_back(std::move(h.end));
                continue;
            }
            auto& e = it->second;
            e.roller = c.roller;
            // Before the last reading is applied: a condition it shows goes on in the event taken
            // over, instead of starting a second one.
            for (auto& h : c.open) {
                if (e.rules->take_over(h, c.config, Clock::now(), steady_now)) {
                    log_->info("sensor {}: its {} alert ({}) goes on after the reload", id, h.end.label,
                               h.id());
                    if (h.end.check == "sensor_health" && h.end.label == "offline") {
                        // The latest cause, and what the room was told of it and when: one it was
                        // not told is said as at that run's next tick, not lost nor said twice.
                        e.cause = h.end.cause;
                        e.told = c.cause_told;
                    }
                } else {
                    log_->info(
                        "sensor {}: its {} alert ({}) ends with the reload: its rule or reading changed", id,
                        h.end.label, h.id());
                    out.push_back(std::move(h.end));
                }
            }
            e.rules->resume_pending(c.pending, c.config, Clock::now(), steady_now);
            if (c.last) {
                e.last = *c.last;
                e.rules->resume(*c.last, steady_now, out);
                log_->debug("sensor {}: the last reading before the reload holds ({} {})", id, c.last->value,
                            e.rules->sensor().unit);
            }
            if (c.silent_since) e.rules->resume_silence(*c.silent_since);
            // After the last reading: a missed cycle raised again carries its value, and a cycle in
            // progress goes on only while that reading is hot.
            if (c.config.disinfection && e.rules->sensor().disinfection)
                e.rules->resume_cycles(c.cycles, Clock::now(), steady_now, out);
        }
    }
    deliver(out);
}

void SensorHub::stop(CarryOver* carry, const config::Gateway* next) {
    if (stopped_) return;
    stopped_ = true;
    // All asked first, then each joined: each may be in a read that waits out its timeout, and
    // the devices' waits overlap instead of adding up (the MQTT input's disconnect too).
    for (auto& m : modbus_) m->request_stop();
    try {
        if (mqtt_ && carry != nullptr && next != nullptr && has_mqtt_sensors(*next) &&
            mqtt_->same_connection(next->sensors_broker(), mqtt_client_id(*next))) {
            // Handled up to here by this run; the rest waits for the next (CarryOver::mqtt_input).
            mqtt_->detach();
            carry->mqtt_input = std::move(mqtt_);
        } else if (mqtt_) {
            mqtt_->stop();
        }
    } catch (const std::exception& e) {
        // The Modbus pollers are still joined, and what was read is still closed and sent below.
        log_->error("sensors: the MQTT input did not stop cleanly: {}", e.what());
    }
    for (auto& m : modbus_) m->stop();
    std::vector<StateMessage> states;
    {
        std::lock_guard order(deliver_mutex_);
        std::vector<events::Event> ends;
        {
            // The minute in progress is not lost at shutdown: it goes out as a partial roll-up, or on
            // to the next run at a reload; and no event stays open in the room for a gateway that is gone.
            std::lock_guard lock(mutex_);
            const auto now = Clock::now();
            const bool continues =
                carry != nullptr && next != nullptr && continues_events(site_.config, *next);
            const bool presence = continues && continues_presence(site_.config, *next);
            for (auto& [id, e] : entries_) {
                if (carry != nullptr) {
                    auto& c = carry->sensors[id] = {e.rules->sensor(),
                                                    e.last,
                                                    e.roller,
                                                    e.rules->cycles(),
                                                    e.rules->silent_since(),
                                                    {},
                                                    e.rules->pending_limits(),
                                                    {}};
                    if (continues && has_sensor(*next, id)) {
                        c.open = e.rules->hand_over(now, events::kEndStopped);
                        // The next run goes on from what the room was told: a cause found within
                        // the minute before the reload is still said (the review of this change).
                        for (auto& h : c.open)
                            if (h.end.label == "offline") h.end.cause = e.cause;
                        c.cause_told = e.told;
                    }
                } else if (auto partial = e.roller.take()) {
                    publish_rollup(e.rules->sensor(), *partial, true);
                }
                const auto begin = ends.size();
                e.rules->close(now, events::kEndStopped, ends);
                end_cause(e, ends, begin);
                // The retained state must not keep showing the conditions whose events just ended, nor
                // a sensor as read that nobody reads now: a reload may have removed it, and its last
                // state would stay on the broker, and in the room, for good. One the next run reads
                // as this one did is left as it is: that run publishes its state as it connects, with
                // the conditions whose events it took over (published here without them, an alarm
                // read as none for a second).
                const auto* after = next != nullptr ? config::find_sensor(*next, id) : nullptr;
                if (presence && after != nullptr && reads_alike(e.rules->sensor(), *after)) continue;
                states.push_back(state_message(e, now, false));
                if (next != nullptr && !has_sensor(*next, id)) {
                    states.back().payload.clear();
                    if (carry != nullptr) carry->cleared_states.push_back(states.back().topic);
                }
            }
        }
        deliver(ends);
    }
    publish_states(states);
}

void SensorHub::on_reading(const sensors::Reading& given) {
    // Timed on the steady clock as the ticks are: an input that did not stamp its arrival on it is
    // stamped here, or its sensor would never go stale.
    sensors::Reading reading = given;
    if (!reading.arrived_steady) reading.arrived_steady = std::chrono::steady_clock::now();
    std::lock_guard order(deliver_mutex_);
    std::vector<events::Event> out;
    {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(reading.sensor);
        if (it == entries_.end()) return;
        auto& e = it->second;
        e.rules->observe(reading, out);
        end_cause(e, out, 0);
        // The day's curve holds what the sensor measured: a probe's error value (-127 from a DS18B20
        // whose wire broke) is an `invalid` event, not a minute whose minimum is -127. Nor is it
        // the reading a reload hands over: the good one before it holds there, as here.
        if (sensors::in_valid_range(e.rules->sensor(), reading.value)) {
            // The newest, not the latest to arrive: a late message is no one's current reading.
            // (Only a device's own time can make a reading late: an arrival time is the newest.)
            if (!e.last || !reading.arrival || reading.time >= e.last->time) e.last = reading;
            if (auto done = e.roller.add(reading.time, reading.value, reading.arrival.value_or(reading.time)))
                publish_rollup(e.rules->sensor(), *done);
        }
        log_->debug("{} = {} {}", reading.sensor, reading.value, e.rules->sensor().unit);
    }
    deliver(out);
}

void SensorHub::deliver(std::vector<events::Event>& events) {
    for (const auto& e : events) site_.sink.submit(e);
}

void publish_rollup(outbox::Outbox& outbox, const publish::Topics& topics, const std::string& site,
                    const config::Sensor& sensor, const sensors::Rollup& r, bool partial) {
    nlohmann::json j = {
        {"site", site},
        {"sensor", sensor.id},
        {"unit", sensor.unit},
        {"minute", iso8601_utc(r.minute)},
        // Rounded as the events' values are: 3276.7000000000003 from a register's 32767 x 0.1.
        {"min", publish::round_to(r.min, 3)},
        {"mean", publish::round_to(r.mean(), 3)},
        {"max", publish::round_to(r.max, 3)},
        {"count", r.count}};
    if (partial) {
        j["partial"] = true;
        j["part"] = fmt::format("{:016x}", r.part);
    }
    // Through the outbox: the day's curve survives an outage, but goes first when space runs out.
    outbox.enqueue({0, topics.sensor_rollup(sensor.id),
                    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 1, false,
                    outbox::Priority::telemetry});
}

void SensorHub::publish_rollup(const config::Sensor& sensor, const sensors::Rollup& r, bool stopping) {
    // A restart within a minute: the stop sent the part before, and this run sends the part after;
    // kept as the last, the room's minute lost its first part.
    app::publish_rollup(outbox_, topics_, site_.config.site.id, sensor, r, stopping || r.minute < created_);
}

SensorHub::StateMessage SensorHub::state_message(const Entry& e, TimePoint now, bool running) const {
    const auto& s = e.rules->sensor();
    const auto st = e.rules->state(std::chrono::steady_clock::now());
    nlohmann::json j = {{"site", site_.config.site.id},
                        {"sensor", s.id},
                        {"name", s.name},
                        {"kind", s.kind},
                        {"location", s.location},
                        {"unit", s.unit},
                        {"online", running && st.online},
                        {"conditions", st.conditions},
                        {"time", iso8601_utc(now)}};
    j["value"] = st.value ? nlohmann::json(publish::round_to(*st.value, 3)) : nlohmann::json(nullptr);
    j["reading_time"] = st.time ? nlohmann::json(iso8601_utc(*st.time)) : nlohmann::json(nullptr);
    if (running && e.cause) j["cause"] = publish::cause_json(*e.cause);
    return {topics_.sensor_state(s.id), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

void SensorHub::publish_states(const std::vector<StateMessage>& messages) {
    for (const auto& m : messages) link_.publish(m.topic, m.payload, 1, true);
}

nlohmann::json SensorHub::states(TimePoint now) {
    std::lock_guard lock(mutex_);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [id, e] : entries_) {
        const auto& s = e.rules->sensor();
        const auto st = e.rules->state(std::chrono::steady_clock::now());
        out.push_back(
            {{"sensor", id},
             {"name", s.name},
             {"kind", s.kind},
             {"location", s.location},
             {"unit", s.unit},
             {"online", st.online},
             {"value", st.value ? nlohmann::json(publish::round_to(*st.value, 3)) : nlohmann::json(nullptr)},
             {"age_s", st.time ? nlohmann::json(seconds_between(*st.time, now)) : nlohmann::json(nullptr)},
             {"conditions", st.conditions},
             {"cause", e.cause ? publish::cause_json(*e.cause) : nlohmann::json(nullptr)}});
    }
    return out;
}

sensors::SensorCounts SensorHub::input_counts() const {
    sensors::SensorCounts out;
    for (const auto& [id, e] : entries_) out[id];  // every sensor listed, at 0 until it counts
    if (mqtt_) mqtt_->add_counts(out);
    for (const auto& m : modbus_) m->add_counts(out);
    return out;
}

std::map<std::string, std::uint64_t> SensorHub::connect_failures() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& m : modbus_) out[m->device()] = m->connect_failures();
    return out;
}

void SensorHub::tick(TimePoint now, SteadyPoint steady_now, bool publish_all_states) {
    // Why each sensor has no readings, as its input found: asked outside mutex_ (the inputs' own
    // locks are never taken inside it), of every sensor, as which are offline is known under it.
    std::map<std::string, std::optional<events::EventCause>> causes;
    for (const auto& s : site_.config.sensors) causes[s.id] = silence_cause(s.id);
    std::vector<StateMessage> states;
    {
        std::lock_guard order(deliver_mutex_);
        std::vector<events::Event> out;
        {
            std::lock_guard lock(mutex_);
            for (auto& [id, e] : entries_) {
                const auto begin = out.size();
                e.rules->tick(now, steady_now, out);
                const auto cause = causes.find(id);
                const bool cause_changed = follow_cause(
                    e, cause != causes.end() ? cause->second : std::nullopt, now, steady_now, out, begin);
                if (auto done = e.roller.expire(now)) publish_rollup(e.rules->sensor(), *done);
                const auto conditions = e.rules->state(steady_now).conditions;
                if (publish_all_states || conditions != e.last_conditions || cause_changed) {
                    e.last_conditions = conditions;
                    states.push_back(state_message(e, now));
                }
            }
        }
        deliver(out);
    }
    publish_states(states);
}

bool SensorHub::follow_cause(Entry& e, const std::optional<events::EventCause>& cause, TimePoint now,
                             SteadyPoint steady_now, std::vector<events::Event>& out, std::size_t begin) {
    const auto kind = [](const std::optional<events::EventCause>& c) {
        return c ? std::optional<std::string>(c->kind) : std::nullopt;
    };
    const auto before = kind(e.cause);
    if (!e.rules->offline()) {
        e.cause.reset();
        e.told.kind.reset();
        return before.has_value();
    }
    bool started = false;
    for (auto it = out.begin() + static_cast<std::ptrdiff_t>(begin); it != out.end(); ++it) {
        if (it->check == "sensor_health" && it->label == "offline" &&
            it->state == events::EventState::start) {
            it->cause = cause;
            started = true;
        }
    }
    if (started) {
        e.cause = cause;
        e.told = {kind(cause), steady_now};
        return before != e.told.kind;
    }
    // An input that knows nothing now (a reload's new poller before its first read) leaves the
    // last cause standing.
    if (!cause) return false;
    e.cause = cause;
    // Another cause than the room was told (the broker gone while the sensor was silent, a Modbus
    // gateway switched off behind a unit that stopped answering): an update says it.
    if (e.told.kind != cause->kind && (!e.told.kind || steady_now - e.told.at >= kCauseUpdateEvery)) {
        e.told = {cause->kind, steady_now};
        const auto n = out.size();
        e.rules->renew_offline(now, out);
        if (out.size() > n) out.back().cause = cause;
    }
    return before != cause->kind;
}

void SensorHub::end_cause(Entry& e, std::vector<events::Event>& out, std::size_t begin) {
    for (auto it = out.begin() + static_cast<std::ptrdiff_t>(begin); it != out.end(); ++it) {
        if (it->check != "sensor_health" || it->label != "offline" || it->state != events::EventState::end)
            continue;
        it->cause = e.cause;
        e.cause.reset();
        e.told.kind.reset();
    }
}

std::optional<events::EventCause> SensorHub::silence_cause(const std::string& sensor) const {
    const auto& sensors = site_.config.sensors;
    const auto it =
        std::find_if(sensors.begin(), sensors.end(), [&](const auto& s) { return s.id == sensor; });
    if (it == sensors.end()) return std::nullopt;
    if (it->source.kind == config::SensorSource::Kind::mqtt)
        return mqtt_ ? mqtt_->silence_cause(sensor) : std::nullopt;
    // A poller is named as its first sensor writes the device; the others may write it otherwise.
    const auto device = config::modbus_connection(it->source.device);
    for (const auto& m : modbus_)
        if (config::modbus_connection(m->device()) == device) return m->silence_cause(sensor);
    return std::nullopt;
}

}  // namespace kg::app
