// doubts(): what a valid configuration asks for that will not happen as its writer likely meant.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/url_text.hpp"
#include "config/config_loader.hpp"
#include "config/read_sections.hpp"
#include "rules/schedule.hpp"

namespace kg::config {

std::vector<std::string> doubts(const Gateway& g) {
    std::vector<std::string> out;
    // Without sensors_mqtt the MQTT sensors are read through the central broker, on a second
    // connection with the site's own account; a district broker that names sessions by account
    // (deploy/mosquitto: use_username_as_clientid) holds one connection per account, and the two
    // would throw each other off for ever (the install review).
    if (!g.sensors_mqtt && !g.mqtt.username.empty() &&
        std::any_of(g.sensors.begin(), g.sensors.end(),
                    [](const Sensor& s) { return s.source.kind == SensorSource::Kind::mqtt; })) {
        out.push_back(fmt::format(
            "the MQTT sensors are read from the central broker ({}) with the site's account '{}', on a "
            "second "
            "connection: a broker that holds one connection per account (deploy/mosquitto's) throws the two "
            "off each other; read them from the canteen's own broker with sensors_mqtt",
            without_password(g.mqtt.url), g.mqtt.username));
    }
    // The public feeds, the push among them, are made only with the public side on.
    if (!g.public_side.rtmp_push.empty() && g.public_side.listen.empty()) {
        out.push_back(
            "public.rtmp_push is set but public.listen is not: the public side is off, and nothing is pushed "
            "(listen on 127.0.0.1 to keep the box's own page private)");
    }
    // A parents' page with no camera on it, or public cameras no page shows: each accepted unsaid,
    // and the installer left to find why parents see nothing (the installer review).
    const bool any_public = std::any_of(g.cameras.begin(), g.cameras.end(),
                                        [](const Camera& c) { return c.enabled && c.is_public; });
    if (!g.public_side.listen.empty() && !any_public) {
        out.push_back(
            "public.listen is set but no enabled camera has public: true: the parents' page shows no kitchen "
            "(only the checks and the temperatures)");
    }
    if (g.public_side.listen.empty() && any_public) {
        out.push_back(
            "cameras have public: true but public.listen is not set: the public side is off, and no parent "
            "sees them");
    }
    // An '@' after the host, with an account or a port before it: most likely a password holding
    // '/', '?' or '#' unencoded, whose rest the client takes for the path (rtsp://admin:12/34@cam/
    // connects to host "admin", port 12). Said, not refused: an '@' may belong to a path.
    for (const auto& cam : g.cameras) {
        if (at_after_authority(cam.url) && !account_breaks_authority(cam.url)) {
            out.push_back(fmt::format(
                "camera '{}': its URL ({}) has an '@' after the host: if it ends the password, write the "
                "password's '/', '?' or '#' percent-encoded (%2F, %3F, %23)",
                cam.id, without_password(cam.url)));
        }
    }
    // A pixel format is asked of a V4L2 device only: a network camera or a file sends what it sends.
    for (const auto& cam : g.cameras) {
        if (cam.input.format.empty() || names_v4l2_device(cam.url)) continue;
        out.push_back(
            fmt::format("camera '{}': input.format ({}) is for V4L2 devices (/dev/videoN) only: ignored "
                        "for its URL",
                        cam.id, cam.input.format));
    }
    // A file camera (a demo, a replay) whose file is not there stays offline, "cannot open", until it
    // is: most often a typo, or an address half-written (`url: rtsp`).
    for (const auto& cam : g.cameras) {
        if (!cam.enabled || names_v4l2_device(cam.url)) continue;
        std::string file;
        if (cam.url.rfind("file://", 0) == 0) {
            file = cam.url.substr(7);
        } else if (cam.url.rfind('/', 0) == 0) {
            file = cam.url;
        } else {
            continue;
        }
        std::error_code ec;
        if (!std::filesystem::exists(file, ec)) {
            out.push_back(fmt::format(
                "camera '{}': its file {} is not there: the camera stays offline until it is", cam.id, file));
        }
    }
    // A zone naming a check its camera does not run judges nothing there for it: most likely the
    // check was meant to be added to the camera too (the 54th session's review: accepted unsaid).
    for (const auto& cam : g.cameras) {
        for (const auto& zone : cam.zones) {
            for (const auto& check : zone.checks) {
                if (std::find(cam.checks.begin(), cam.checks.end(), check) != cam.checks.end()) continue;
                out.push_back(fmt::format(
                    "camera '{}': zone '{}' names the check '{}', which the camera does not run: nothing is "
                    "judged there for it (add it to the camera's checks)",
                    cam.id, zone.name, check));
            }
        }
    }
    // A register read with the wrong type, word order or scale gives numbers, only impossible ones
    // (float32 read as int16, 275251.2 degC as uint32): without a range they are taken as readings,
    // judged by the thresholds and shown to parents (the installer review).
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::modbus || sensor.kind != "temperature" ||
            (sensor.min_valid && sensor.max_valid))
            continue;
        out.push_back(fmt::format(
            "sensor '{}': a Modbus temperature without valid_range: a wrong type, word_order or scale would "
            "give impossible temperatures taken as readings (parents see them too); give the probe's range, "
            "e.g. valid_range: [-40, 60]",
            sensor.id));
    }
    // On a serial line a unit that stops answering holds the line for its timeout twice (the read, then
    // the drain of a late answer), and a libmodbus unit ignores the frame after a request to another
    // unit, so the next read may time out too: with a short interval and stale_after, the units that
    // answer went offline at each retry of a dead one (the sensors review: every 2 minutes).
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::modbus || sensor.source.device.rfind("rtu:", 0) != 0)
            continue;
        Duration others{0};
        for (const auto& other : g.sensors) {
            if (&other != &sensor && other.source.kind == SensorSource::Kind::modbus &&
                other.source.device == sensor.source.device)
                others = std::max(others, other.source.response_timeout);
        }
        if (others == Duration::zero()) continue;
        const auto held = 2 * others + sensor.source.response_timeout;
        if (sensor.interval + held < sensor.silence_limit()) continue;
        const auto seconds = [](Duration d) { return std::chrono::duration<double>(d).count(); };
        out.push_back(fmt::format(
            "sensor '{}': another unit on {} that stops answering holds the line up to {:.1f} s (its timeout "
            "twice, and this unit's own read after it); with this sensor's interval that reaches its offline "
            "limit ({:.1f} s), so it would go offline at each retry of a dead unit: raise its stale_after or "
            "lower the timeouts",
            sensor.id, sensor.source.device, seconds(held), seconds(sensor.silence_limit())));
    }
    // A kind without a field of its own reads `temperature` by default, which for a door or a kind
    // of the site's own is most likely not its number.
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::mqtt || sensor.value_path_given ||
            sensor.source.value_path != "temperature" || sensor.kind == "temperature")
            continue;
        out.push_back(fmt::format(
            "sensor '{}' (kind {}) reads the 'temperature' field of its payload (no source.mqtt.value "
            "given): "
            "name the field that holds its reading{}",
            sensor.id, sensor.kind.empty() ? "none" : sensor.kind,
            sensor.kind == "door" ? " (Zigbee2MQTT's 'contact' is true when the door is closed)" : ""));
    }
    // A detector's own field is true/false in Zigbee2MQTT (1 or 0 here): a threshold set for a
    // concentration (above 20 %LEL, 1000 ppm) never fires on it.
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::mqtt || sensor.value_path_given ||
            (sensor.kind != "gas" && sensor.kind != "smoke" && sensor.kind != "leak"))
            continue;
        for (const auto& t : sensor.thresholds) {
            if (!(t.above && t.value >= 1) && !(!t.above && t.value > 1)) continue;
            out.push_back(fmt::format(
                "sensor '{}': threshold '{}' ({} {}) is for a measured amount, but the sensor reads its "
                "payload's '{}', which Zigbee2MQTT detectors send as true/false (1 or 0): it never fires; "
                "name the field that holds the amount in source.mqtt.value",
                sensor.id, t.label, t.above ? "above" : "below", t.value, sensor.source.value_path));
            break;
        }
    }
    // Limits a valid reading can never cross, or always has: the rule can never say anything (a
    // reading past valid_range is an `invalid` event, not a value the rules judge).
    for (const auto& sensor : g.sensors) {
        const auto range =
            fmt::format("valid_range [{}, {}]", sensor.min_valid ? fmt::format("{}", *sensor.min_valid) : "",
                        sensor.max_valid ? fmt::format("{}", *sensor.max_valid) : "");
        if (sensor.disinfection && sensor.max_valid && sensor.disinfection->setpoint > *sensor.max_valid) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.setpoint {} is above its {}: no valid reading reaches it, so no "
                "cycle ever counts and every window is a missed cycle",
                sensor.id, sensor.disinfection->setpoint, range));
        }
        if (sensor.source.unit_id == 0 && sensor.source.device.rfind("rtu:", 0) == 0) {
            out.push_back(fmt::format(
                "sensor '{}': unit_id 0 is the broadcast address on a serial line: no unit answers it, so "
                "the sensor is never read (give the unit's own address, 1..247)",
                sensor.id));
        }
        // A cycle counts while the value is at or above the set point: with the set point at or below
        // the lowest valid reading, a cold cabinet reads as one disinfecting all the time.
        if (sensor.disinfection && sensor.min_valid && sensor.disinfection->setpoint <= *sensor.min_valid) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.setpoint {} is at or below the min of its {}: every valid reading "
                "is hot, so the cabinet always reads as disinfecting and a missed cycle is never raised",
                sensor.id, sensor.disinfection->setpoint, range));
        }
        for (const auto& th : sensor.thresholds) {
            const bool never = th.above ? sensor.max_valid && th.value >= *sensor.max_valid
                                        : sensor.min_valid && th.value <= *sensor.min_valid;
            const bool always = th.above ? sensor.min_valid && th.value < *sensor.min_valid
                                         : sensor.max_valid && th.value > *sensor.max_valid;
            if (!never && !always) continue;
            out.push_back(fmt::format(
                "sensor '{}': threshold '{}' ({} {}) lies outside its {}: {} valid reading "
                "is {} it, so '{}' is {}",
                sensor.id, th.label, th.above ? "above" : "below", th.value, range, never ? "no" : "every",
                th.above ? "above" : "below", th.label, never ? "never raised" : "raised for good"));
        }
    }
    // A kind the gateway does not know gives its thresholds a measurement's defaults. For a detector
    // named otherwise (`lpg`, `smoke_detector`) that is an alarm ten minutes late, or one whose end
    // waits for a value past 0 that it never sends.
    for (const auto& sensor : g.sensors) {
        if (detail::known_kind(sensor.kind)) continue;
        const bool defaults =
            std::any_of(sensor.thresholds.begin(), sensor.thresholds.end(),
                        [](const Threshold& th) { return !th.for_given || !th.hysteresis_given; });
        if (!defaults) continue;
        out.push_back(fmt::format(
            "sensor '{}': kind '{}' is not one the gateway knows ({}), so its thresholds wait the default "
            "`for` (10m) and end past the limit by the default hysteresis (0.5), as a fridge's do: a gas or "
            "smoke detector is kind gas or smoke (an alarm at once), a door contact or leak detector kind "
            "door "
            "or leak; or give `for` and `hysteresis` in each threshold",
            sensor.id, sensor.kind, fmt::join(detail::kKnownKinds, ", ")));
    }
    // `not` of a schedule active all week: a rule under it never applies (or only on holidays),
    // and nothing says so.
    for (const auto& schedule : g.schedules) {
        if (!schedule.inverted) continue;
        rules::Schedule windows{schedule.name, schedule.days, {}, schedule.on_holidays, schedule.inverted};
        try {
            for (const auto& t : schedule.times) windows.windows.push_back(rules::parse_window(t));
        } catch (const std::invalid_argument&) {
            continue;  // an error of its own
        }
        if (rules::never_active(windows)) {
            out.push_back(
                fmt::format("schedule '{}' is the 'not' of a schedule active all week, so it is {}: a rule "
                            "under it {}",
                            schedule.name, schedule.on_holidays ? "never active" : "active on holidays only",
                            schedule.on_holidays ? "never applies" : "applies on holidays only"));
        }
    }
    // A disinfection window is judged when it ends: one that never does never raises a missed cycle.
    for (const auto& sensor : g.sensors) {
        if (!sensor.disinfection) continue;
        const auto& name = sensor.disinfection->schedule;
        const auto it = std::find_if(g.schedules.begin(), g.schedules.end(),
                                     [&](const Schedule& s) { return s.name == name; });
        if (it == g.schedules.end()) continue;
        rules::Schedule windows{it->name, it->days, {}, it->on_holidays, it->inverted};
        try {
            for (const auto& t : it->times) windows.windows.push_back(rules::parse_window(t));
        } catch (const std::invalid_argument&) {
            continue;  // an error of its own
        }
        if (rules::never_ends(windows)) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.schedule '{}' is active all week, so its window never ends and a "
                "missed cycle is never judged: give the windows a cycle must run in, e.g. the hour after "
                "each "
                "meal",
                sensor.id, name));
        }
    }
    return out;
}

}  // namespace kg::config
