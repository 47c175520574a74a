// The cameras: each camera's URL, input, analysis, health, checks, rules, zones, masks and scene, and
// the defaults every camera starts from.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "config/read_sections.hpp"

namespace kg::config {

const std::vector<std::string>& known_checks() {
    static const std::vector<std::string> checks{
        "camera_health", "mask",        "head_covering", "after_hours_motion",
        "unattended",    "cleanliness", "bin_lid"};
    return checks;
}

namespace detail {
namespace {

constexpr const char* kCameraUrlForms =
    "use rtsp://, rtsps://, rtmp://, rtmps://, http:// or https:// with a host, a file path (or "
    "file://PATH), or a V4L2 device (/dev/videoN or v4l2:///dev/videoN)";

// "rtsp:/host/x" or "ftp://x": a scheme the reader would otherwise take for part of a file name.
bool has_scheme(const std::string& url) {
    static const std::regex scheme("^[A-Za-z][A-Za-z0-9+.-]*:/");
    return std::regex_search(url, scheme);
}

// Returns an error message or "" and the URL with relative file paths made absolute.
std::string check_camera_url(const Reader& r, const std::string& url, std::string& resolved) {
    if (url.empty()) return fmt::format("is empty: {}", kCameraUrlForms);
    const auto display = shown(url);
    if (std::any_of(url.begin(), url.end(),
                    [](unsigned char c) { return c < 0x20 || c == ' ' || c == 0x7f; })) {
        return fmt::format("'{}' contains spaces or control characters (percent-encode them); {}", display,
                           kCameraUrlForms);
    }
    for (std::string_view scheme : {"rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://"}) {
        if (starts_with(url, scheme)) {
            const auto problem = check_authority(url.substr(scheme.size()));
            resolved = url;
            return problem.empty() ? "" : fmt::format("'{}': {}; {}", display, problem, kCameraUrlForms);
        }
    }
    if (starts_with(url, "v4l2://")) {
        resolved = url;
        return starts_with(url.substr(7), "/dev/")
                   ? ""
                   : fmt::format("'{}': expected v4l2:///dev/videoN", display);
    }
    if (starts_with(url, "/dev/")) {
        resolved = url;
        return "";
    }
    if (starts_with(url, "file://")) {
        if (url.size() == 7) return fmt::format("file:// needs a path; {}", kCameraUrlForms);
        resolved = "file://" + r.resolve(url.substr(7)).string();
        return "";
    }
    if (url.find("://") != std::string::npos || has_scheme(url)) {
        return fmt::format("'{}' is not a supported camera URL: {}", display, kCameraUrlForms);
    }
    resolved = r.resolve(url).string();  // a plain file path
    // What an installer types for a camera's address without its scheme (its IP, host:port, a scheme
    // missing its colon) was taken for a file's path: the camera stayed offline, "cannot open: No
    // such file", and --check-config said OK (the configuration review). A file of that name wins.
    static const std::regex address_like(
        R"(^((rtsps?|rtmps?|https?)//|\d{1,3}(\.\d{1,3}){3}([:/].*)?$|[A-Za-z0-9.-]+:\d{1,5}(/.*)?$))");
    std::error_code ec;
    if (std::regex_search(url, address_like) && !std::filesystem::exists(resolved, ec)) {
        return fmt::format(
            "'{}' looks like a camera's address without its scheme, and is no file here: write "
            "it as rtsp://HOST[:PORT]/PATH (the path the camera's manual gives); {}",
            display, kCameraUrlForms);
    }
    return "";
}

void read_input(Reader& r, const YAML::Node& n, const std::string& path, Input& in) {
    if (!r.map(n, path, {"transport", "timeout", "reconnect", "loop", "realtime", "format"})) return;
    if (n["transport"]) {
        std::string t;
        if (r.string(n["transport"], path + ".transport", t)) {
            if (t == "tcp") {
                in.transport = Transport::tcp;
            } else if (t == "udp") {
                in.transport = Transport::udp;
            } else {
                r.error(n["transport"], path + ".transport", fmt::format("'{}' is not tcp or udp", t));
            }
        }
    }
    if (n["timeout"]) r.duration(n["timeout"], path + ".timeout", in.timeout);
    if (const auto rc = n["reconnect"];
        rc && r.map(rc, path + ".reconnect", {"min", "max", "healthy_after"})) {
        if (rc["min"]) r.duration(rc["min"], path + ".reconnect.min", in.reconnect_min);
        if (rc["max"]) r.duration(rc["max"], path + ".reconnect.max", in.reconnect_max);
        if (rc["healthy_after"]) {
            r.duration(rc["healthy_after"], path + ".reconnect.healthy_after", in.reconnect_healthy_after);
        }
        if (in.reconnect_min > in.reconnect_max) r.error(rc, path + ".reconnect", "min is longer than max");
    }
    if (n["loop"]) r.boolean(n["loop"], path + ".loop", in.loop);
    if (n["realtime"]) r.boolean(n["realtime"], path + ".realtime", in.realtime);
    if (n["format"] && r.string(n["format"], path + ".format", in.format)) {
        const bool word = !in.format.empty() && in.format.size() <= 32 &&
                          std::all_of(in.format.begin(), in.format.end(), [](char c) {
                              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                          });
        if (!word) {
            r.error(n["format"], path + ".format",
                    fmt::format("'{}' is not a pixel format's name like mjpeg, h264 or yuyv422", in.format));
        }
    }
}

void read_analysis(Reader& r, const YAML::Node& n, const std::string& path, Analysis& a) {
    if (!r.map(n, path, {"fps", "width", "height", "keyframes_only"})) return;
    if (n["fps"]) r.number(n["fps"], path + ".fps", a.fps, 0.0, 30.0, true);
    for (auto [key, field, max] :
         {std::tuple{"width", &a.width, 3840}, std::tuple{"height", &a.height, 2160}}) {
        if (n[key] && r.integer(n[key], join(path, key), *field, 32, max) && *field % 2 != 0) {
            r.error(n[key], join(path, key), fmt::format("{} must be even", *field));
        }
    }
    if (n["keyframes_only"]) r.boolean(n["keyframes_only"], path + ".keyframes_only", a.keyframes_only);
}

void read_health(Reader& r, const YAML::Node& n, const std::string& path, Health& h) {
    if (!r.map(n, path,
               {"offline_after", "black_luma", "blank_stddev", "covered_fraction", "frozen_after",
                "frozen_diff", "confirm", "clear", "unstable_after", "damaged_share"})) {
        return;
    }
    if (n["offline_after"]) r.duration(n["offline_after"], path + ".offline_after", h.offline_after);
    if (n["black_luma"]) r.number(n["black_luma"], path + ".black_luma", h.black_luma, 0, 255);
    if (n["blank_stddev"]) r.number(n["blank_stddev"], path + ".blank_stddev", h.blank_stddev, 0, 128);
    if (n["covered_fraction"])
        r.number(n["covered_fraction"], path + ".covered_fraction", h.covered_fraction, 0, 1, true);
    if (n["frozen_after"]) r.duration(n["frozen_after"], path + ".frozen_after", h.frozen_after);
    if (n["frozen_diff"]) r.number(n["frozen_diff"], path + ".frozen_diff", h.frozen_diff, 0, 255);
    if (n["confirm"]) r.duration(n["confirm"], path + ".confirm", h.confirm, true);
    if (n["clear"]) r.duration(n["clear"], path + ".clear", h.clear, true);
    if (n["unstable_after"])
        r.integer(n["unstable_after"], path + ".unstable_after", h.unstable_after, 0, 1000);
    if (n["damaged_share"]) r.number(n["damaged_share"], path + ".damaged_share", h.damaged_share, 0, 1);
}

// "model:<name>" checks name a user model declared under `models`; they are checked once the whole
// document is read (check_references), so here any model:<id> passes.
bool known_check(const std::string& name) {
    if (name.rfind("model:", 0) == 0) return std::regex_match(name.substr(6), kIdPattern);
    const auto& k = known_checks();
    return std::find(k.begin(), k.end(), name) != k.end();
}

void read_checks(Reader& r, const YAML::Node& n, const std::string& path, std::vector<std::string>& checks) {
    std::vector<std::string> names;
    if (!r.strings(n, path, names)) return;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i), names[i]) !=
            names.begin() + static_cast<std::ptrdiff_t>(i)) {
            r.error(n[i], fmt::format("{}[{}]", path, i),
                    fmt::format("check '{}' is listed twice", names[i]));
        } else if (!known_check(names[i])) {
            std::string list;
            for (const auto& k : known_checks()) list += (list.empty() ? "" : ", ") + k;
            r.error(n[i], fmt::format("{}[{}]", path, i),
                    fmt::format("unknown check '{}' (known: {})", names[i], list));
        }
    }
    checks = names;
}

void read_rule(Reader& r, const YAML::Node& n, const std::string& path, Rule& rule) {
    if (!r.map(n, path,
               {"severity", "confirm", "clear", "cooldown", "threshold", "median_window", "schedule"})) {
        return;
    }
    if (n["severity"]) r.integer(n["severity"], path + ".severity", rule.severity, 1, 3);
    if (n["confirm"]) r.duration(n["confirm"], path + ".confirm", rule.confirm, true);
    if (n["clear"]) r.duration(n["clear"], path + ".clear", rule.clear, true);
    if (n["cooldown"]) r.duration(n["cooldown"], path + ".cooldown", rule.cooldown, true);
    if (n["threshold"]) r.number(n["threshold"], path + ".threshold", rule.threshold, 0, 1);
    if (n["median_window"])
        r.integer(n["median_window"], path + ".median_window", rule.median_window, 1, 100);
    if (n["schedule"]) r.string(n["schedule"], path + ".schedule", rule.schedule);
}

Rule builtin_rule(const std::string& check);

// Per check name; a check's built-in rule is overridden by defaults.rules, then by the camera's, a
// key at a time: `defaults.rules.after_hours_motion: {schedule: closed}` used to start from a plain
// rule, and the rodent check lost its severity 1 and its 1 s confirm on every camera.
void read_rules(Reader& r, const YAML::Node& n, const std::string& path, std::map<std::string, Rule>& rules) {
    if (!r.map_of_names(n, path, "a map of check names to rules")) return;
    for (const auto& [check, key_node, value] : Reader::entries(n)) {
        const auto key = join(path, check);
        if (!known_check(check)) {
            r.error(key_node, key, fmt::format("unknown check '{}'", check));
            continue;
        }
        read_rule(r, value, key, rules.try_emplace(check, builtin_rule(check)).first->second);
    }
}

constexpr double kMinPolygonArea = 1e-4;  // 1% by 1% of the picture

// Shoelace formula, in shares of the picture.
double polygon_area(const std::vector<Point>& points) {
    double twice = 0;
    for (std::size_t i = 0, j = points.size() - 1; i < points.size(); j = i++)
        twice +=
            static_cast<double>(points[j].x) * points[i].y - static_cast<double>(points[i].x) * points[j].y;
    return std::abs(twice) / 2;
}

std::vector<Point> read_polygon(Reader& r, const YAML::Node& n, const std::string& path) {
    std::vector<Point> points;
    if (!n.IsSequence() || n.size() < 3) {
        r.error(n, path, "expected a polygon: a list of at least 3 [x, y] points, normalised 0..1");
        return points;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        const auto p = n[i];
        const auto key = fmt::format("{}[{}]", path, i);
        double x = 0, y = 0;
        if (!p.IsSequence() || p.size() != 2) {
            r.error(p, key, "expected a point [x, y]");
            continue;
        }
        if (r.number(p[0], key, x, 0, 1) && r.number(p[1], key, y, 0, 1)) {
            points.push_back({static_cast<float>(x), static_cast<float>(y)});
        }
    }
    // Points in a line (or repeated) enclose nothing: no detection ever stood in such a zone, and
    // `unattended` there was raised for the whole schedule.
    if (points.size() == n.size() && polygon_area(points) < kMinPolygonArea) {
        r.error(n, path,
                fmt::format("the polygon encloses {:.4f}% of the picture, less than {:.2f}%: its points are "
                            "(nearly) in a line",
                            100 * polygon_area(points), 100 * kMinPolygonArea));
    }
    return points;
}

void read_zones(Reader& r, const YAML::Node& n, const std::string& path, std::vector<Zone>& zones) {
    if (!r.map_of_names(n, path, "a map of zone names to zones")) return;
    for (const auto& [name, key_node, value] : Reader::entries(n)) {
        Zone z;
        z.name = name;
        const auto key = join(path, z.name);
        if (!std::regex_match(z.name, kIdPattern)) {
            r.error(key_node, key,
                    fmt::format("'{}' is not a valid zone name: use letters, digits, '_' or '-'", z.name));
        }
        if (!r.map(value, key, {"polygon", "checks"})) continue;
        if (value["polygon"]) {
            z.polygon = read_polygon(r, value["polygon"], key + ".polygon");
        } else {
            r.error(value, key + ".polygon", "missing required key");
        }
        if (value["checks"]) read_checks(r, value["checks"], key + ".checks", z.checks);
        zones.push_back(std::move(z));
    }
}

// Regulators' tiers: 1 immediate (rodents), 2 fix within a deadline (camera faults, bin lid),
// 3 routine (mask, hat, cleanliness).
Rule builtin_rule(const std::string& check) {
    Rule rule;
    if (check == "camera_health" || check == "bin_lid" || check == "unattended") rule.severity = 2;
    if (check == "after_hours_motion") rule.severity = 1;
    if (check == "cleanliness" || check == "bin_lid") rule.confirm = std::chrono::seconds(60);
    if (check == "after_hours_motion") {
        rule.confirm = std::chrono::seconds(1);
        rule.median_window = 1;
    }
    if (check == "unattended") {
        rule.confirm = Duration(0);  // scene.unattended_after already is the delay
        rule.median_window = 1;
    }
    // A detector's boxes passed its own threshold (the manifest's `score_threshold`, `min_score`),
    // the operating point its accuracy is measured at; 0.5 here too made the shipped models' 0.3
    // a dead letter: 80% of the mask model's no_mask boxes scored 0.3-0.5 and raised nothing. Any
    // box counts; a threshold set here is a stricter one.
    if (check == "mask" || check == "head_covering" || check.rfind("model:", 0) == 0) rule.threshold = 0;
    return rule;
}

void read_scene(Reader& r, const YAML::Node& n, const std::string& path, Scene& s) {
    if (!r.map(n, path, {"reference", "min_area", "unattended_after", "detect_refresh"})) return;
    if (n["reference"] && r.string(n["reference"], path + ".reference", s.reference) &&
        !s.reference.empty()) {
        s.reference = r.resolve(s.reference).string();
        const auto mark = n["reference"].Mark();
        s.reference_key = path + ".reference";
        s.reference_place = {mark.line + 1, mark.column + 1};
    }
    if (n["min_area"]) r.number(n["min_area"], path + ".min_area", s.min_area, 0, 1, true);
    if (n["unattended_after"])
        r.duration(n["unattended_after"], path + ".unattended_after", s.unattended_after);
    if (n["detect_refresh"]) r.duration(n["detect_refresh"], path + ".detect_refresh", s.detect_refresh);
}

}  // namespace

void read_defaults(Reader& r, const YAML::Node& n, CameraDefaults& d) {
    if (!r.map(n, "defaults", {"input", "analysis", "health", "scene", "checks", "rules"})) return;
    if (n["scene"]) read_scene(r, n["scene"], "defaults.scene", d.scene);
    if (n["input"]) read_input(r, n["input"], "defaults.input", d.input);
    if (n["analysis"]) read_analysis(r, n["analysis"], "defaults.analysis", d.analysis);
    if (n["health"]) read_health(r, n["health"], "defaults.health", d.health);
    if (n["checks"]) read_checks(r, n["checks"], "defaults.checks", d.checks);
    if (n["rules"]) read_rules(r, n["rules"], "defaults.rules", d.rules);
}

void read_camera(Reader& r, const YAML::Node& n, const std::string& path, const CameraDefaults& d,
                 Camera& cam) {
    cam.input = d.input;
    cam.analysis = d.analysis;
    cam.health = d.health;
    cam.scene = d.scene;
    cam.checks = d.checks;
    cam.source_line = n.Mark().line + 1;
    if (!r.map(n, path,
               {"id", "name", "url", "public", "enabled", "checks", "input", "analysis", "health", "scene",
                "zones", "masks", "privacy_masks", "rules"})) {
        return;
    }
    if (n["id"]) {
        r.id(n["id"], path + ".id", cam.id);
    } else {
        r.error(n, path + ".id", "missing required key");
    }
    if (n["name"]) r.string(n["name"], path + ".name", cam.name);
    if (cam.name.empty()) cam.name = cam.id;
    if (n["url"]) {
        std::string url;
        if (r.string(n["url"], path + ".url", url)) {
            const auto problem = check_camera_url(r, url, cam.url);
            if (!problem.empty()) r.error(n["url"], path + ".url", problem);
        }
    } else {
        r.error(n, path + ".url", "missing required key");
    }
    if (n["public"]) r.boolean(n["public"], path + ".public", cam.is_public);
    if (n["enabled"]) r.boolean(n["enabled"], path + ".enabled", cam.enabled);
    if (n["checks"]) read_checks(r, n["checks"], path + ".checks", cam.checks);
    if (n["input"]) read_input(r, n["input"], path + ".input", cam.input);
    if (n["analysis"]) read_analysis(r, n["analysis"], path + ".analysis", cam.analysis);
    if (n["health"]) read_health(r, n["health"], path + ".health", cam.health);
    if (n["scene"]) read_scene(r, n["scene"], path + ".scene", cam.scene);
    if (n["zones"]) {
        read_zones(r, n["zones"], path + ".zones", cam.zones);
        // `unattended` counts movement as a share of the whole picture (min_area), so that steam
        // over a small stove zone does not pass for a cook: a zone smaller than that share could
        // never show anyone, and was raised for the whole schedule.
        const bool unattended =
            std::find(cam.checks.begin(), cam.checks.end(), "unattended") != cam.checks.end();
        for (const auto& z : cam.zones) {
            // Only a zone that names it: otherwise unattended judges the whole picture.
            const bool applies = std::find(z.checks.begin(), z.checks.end(), "unattended") != z.checks.end();
            if (!unattended || !applies || z.polygon.size() < 3) continue;
            if (const double area = polygon_area(z.polygon);
                area >= kMinPolygonArea && area < cam.scene.min_area) {
                r.error(
                    n["zones"][z.name]["polygon"], join(path + ".zones", z.name) + ".polygon",
                    fmt::format("covers {:.2f}% of the picture, less than scene.min_area ({:.2f}%): no one "
                                "working there could be seen, and unattended would always be raised; draw "
                                "the zone larger or lower min_area",
                                100 * area, 100 * cam.scene.min_area));
            }
        }
    }
    if (const auto m = n["masks"]) {
        if (!m.IsSequence()) {
            r.error(m, path + ".masks", "expected a list of polygons");
        } else {
            for (std::size_t i = 0; i < m.size(); ++i) {
                cam.masks.push_back(read_polygon(r, m[i], fmt::format("{}.masks[{}]", path, i)));
            }
        }
    }
    if (const auto m = n["privacy_masks"]) {
        if (!m.IsSequence()) {
            r.error(m, path + ".privacy_masks", "expected a list of polygons");
        } else {
            for (std::size_t i = 0; i < m.size(); ++i) {
                cam.privacy_masks.push_back(
                    read_polygon(r, m[i], fmt::format("{}.privacy_masks[{}]", path, i)));
            }
        }
    }
    // camera_health's rule always exists: offline detection runs on every camera.
    std::vector<std::string> ruled = cam.checks;
    if (std::find(ruled.begin(), ruled.end(), "camera_health") == ruled.end())
        ruled.push_back("camera_health");
    for (const auto& check : ruled) {
        Rule rule = builtin_rule(check);
        if (auto it = d.rules.find(check); it != d.rules.end()) rule = it->second;
        cam.rules[check] = rule;
    }
    if (const auto rules = n["rules"];
        rules && r.map_of_names(rules, path + ".rules", "a map of check names to rules")) {
        for (const auto& [check, key_node, value] : Reader::entries(rules)) {
            const auto key = join(path + ".rules", check);
            if (!known_check(check)) {
                r.error(key_node, key, fmt::format("unknown check '{}'", check));
            } else if (!cam.rules.count(check)) {
                r.error(key_node, key, fmt::format("check '{}' is not in this camera's checks", check));
            } else {
                read_rule(r, value, key, cam.rules[check]);
            }
        }
    }
}

}  // namespace detail
}  // namespace kg::config
