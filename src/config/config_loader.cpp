#include "config/config_loader.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "config/read_sections.hpp"

namespace kg::config {
namespace fs = std::filesystem;

std::string ConfigError::to_string() const {
    std::string where = file;
    if (line > 0) where += fmt::format(":{}:{}", line, column);
    return key.empty() ? fmt::format("{}: {}", where, message)
                       : fmt::format("{}: {}: {}", where, key, message);
}

namespace {

std::string summary(const std::vector<ConfigError>& errors) {
    if (errors.empty()) return "invalid configuration";
    if (errors.size() == 1) return errors.front().to_string();
    const auto more = errors.size() - 1;
    return fmt::format("{} (and {} more error{})", errors.front().to_string(), more, more == 1 ? "" : "s");
}

}  // namespace

ConfigInvalid::ConfigInvalid(std::vector<ConfigError> errs)
    : std::runtime_error(summary(errs)), errors(std::move(errs)) {}

namespace detail {
namespace {

std::pair<int, int> place_of(const YAML::Node& n) {
    const auto mark = n.Mark();
    return {mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0};
}

void read_site(Reader& r, const YAML::Node& n, Site& site) {
    if (!r.map(n, "site", {"id", "name", "timezone", "holidays"})) return;
    if (n["id"]) {
        r.id(n["id"], "site.id", site.id);
    } else {
        r.error(n, "site.id", "missing required key");
    }
    if (n["name"]) {
        if (r.string(n["name"], "site.name", site.name) &&
            site.name.find_first_not_of(" \t") == std::string::npos)
            r.error(n["name"], "site.name",
                    "empty: the canteen's name, shown to the monitoring room and to parents");
    } else {
        r.error(n, "site.name", "missing required key");
    }
    if (n["timezone"]) r.string(n["timezone"], "site.timezone", site.timezone);
    if (n["holidays"]) r.strings(n["holidays"], "site.holidays", site.holidays);
}

Gateway read_document(Reader& r, const YAML::Node& root) {
    Gateway g;
    if (!root.IsMap()) {
        r.error(root, "", "the configuration must be a map with site, mqtt and cameras");
        throw ConfigInvalid(r.errors);
    }
    r.map(root, "",
          {"site", "mqtt", "log", "analysis_threads", "defaults", "cameras", "schedules", "outbox",
           "evidence", "training_frames", "detectors", "models", "sensors", "sensors_mqtt", "api", "public"});
    if (root["public"]) read_public(r, root["public"], g.public_side);
    if (root["api"]) read_api(r, root["api"], g.api);
    check_listeners_apart(r, root, g);
    if (root["sensors_mqtt"]) read_sensors_broker(r, root["sensors_mqtt"], g.sensors_mqtt);
    if (const auto sensors = root["sensors"]) {
        if (!sensors.IsSequence()) {
            r.error(sensors, "sensors", "expected a list of sensors");
        } else {
            std::map<std::string, int> first_line;
            for (std::size_t i = 0; i < sensors.size(); ++i) {
                Sensor sensor;
                const auto path = fmt::format("sensors[{}]", i);
                read_sensor(r, sensors[i], path, sensor);
                if (!sensor.id.empty()) {
                    if (auto it = first_line.find(sensor.id); it != first_line.end()) {
                        r.error(sensors[i]["id"], path + ".id",
                                fmt::format("duplicate sensor id '{}' (first used on line {})", sensor.id,
                                            it->second));
                    } else {
                        first_line[sensor.id] = sensors[i]["id"].Mark().line + 1;
                    }
                }
                g.sensors.push_back(std::move(sensor));
            }
        }
    }
    if (const auto d = root["detectors"]; d && r.map(d, "detectors", {"mask", "head_covering"})) {
        for (auto [key, field] :
             {std::pair{"mask", &g.mask_detector}, std::pair{"head_covering", &g.head_detector}}) {
            if (!d[key] || !r.string(d[key], join("detectors", key), *field)) continue;
            g.detector_places[join("detectors", key)] = place_of(d[key]);
            if (*field != "auto" && field->rfind("classic:", 0) != 0) *field = r.resolve(*field).string();
        }
    }
    if (const auto m = root["models"]) {
        if (r.map_of_names(m, "models", "a map of model names to manifest files")) {
            for (const auto& [name, key_node, value] : Reader::entries(m)) {
                std::string manifest;
                if (!std::regex_match(name, kIdPattern))
                    r.error(key_node, join("models", name), "not a valid model name");
                if (r.string(value, join("models", name), manifest)) {
                    g.models[name] = r.resolve(manifest).string();
                    g.detector_places[join("models", name)] = place_of(value);
                }
            }
        }
    }
    if (root["site"]) {
        read_site(r, root["site"], g.site);
    } else {
        r.error(root, "site", "missing required key");
    }
    if (root["mqtt"]) read_mqtt(r, root["mqtt"], g.mqtt);
    if (g.mqtt.client_id.empty()) g.mqtt.client_id = "kitchen-gateway-" + g.site.id;
    if (const auto log = root["log"]; log && r.map(log, "log", {"level", "json"})) {
        if (log["level"] && r.string(log["level"], "log.level", g.log.level)) {
            static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
            if (!levels.count(g.log.level)) {
                r.error(log["level"], "log.level",
                        fmt::format("'{}' is not one of trace, debug, info, warn, error", g.log.level));
            }
        }
        if (log["json"]) r.boolean(log["json"], "log.json", g.log.json);
    }
    if (root["analysis_threads"])
        r.integer(root["analysis_threads"], "analysis_threads", g.analysis_threads, 0, 256);
    if (root["schedules"]) read_schedules(r, root["schedules"], g.schedules);
    if (root["outbox"]) read_outbox(r, root["outbox"], g.outbox);
    if (root["evidence"]) read_evidence(r, root["evidence"], g.evidence);
    if (root["training_frames"]) read_training_frames(r, root["training_frames"], g.training_frames);

    CameraDefaults defaults;
    if (root["defaults"]) read_defaults(r, root["defaults"], defaults);

    const auto cams = root["cameras"];
    if (!cams) {
        if (g.sensors.empty())
            r.error(root, "cameras", "missing required key: at least one camera or sensor");
    } else if (!cams.IsSequence() || cams.size() == 0) {
        r.error(cams, "cameras", "expected a non-empty list of cameras");
    } else {
        std::map<std::string, int> first_line;
        for (std::size_t i = 0; i < cams.size(); ++i) {
            Camera cam;
            const auto path = fmt::format("cameras[{}]", i);
            read_camera(r, cams[i], path, defaults, cam);
            if (!cam.id.empty()) {
                if (auto it = first_line.find(cam.id); it != first_line.end()) {
                    r.error(
                        cams[i]["id"], path + ".id",
                        fmt::format("duplicate camera id '{}' (first used on line {})", cam.id, it->second));
                } else {
                    first_line[cam.id] = cams[i]["id"].Mark().line + 1;
                }
            }
            g.cameras.push_back(std::move(cam));
        }
    }
    check_references(r, root, g);
    return g;
}

}  // namespace
}  // namespace detail

Gateway load_string(const std::string& yaml, const std::string& source_name) {
    detail::Reader reader(source_name, fs::absolute(fs::path(source_name)).parent_path());
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(yaml);
    } catch (const YAML::ParserException& e) {
        // yaml-cpp's "illegal tab when looking for indentation" names the rule, not the fix: YAML
        // indents with spaces only, and an editor's tab key is the usual cause.
        const bool tab = e.msg.find("tab") != std::string::npos;
        throw ConfigInvalid(
            {{source_name, e.mark.line + 1, e.mark.column + 1, "",
              "YAML syntax error: " + e.msg +
                  (tab ? " (YAML indents with spaces only: replace the tab with spaces)" : "")}});
    }
    if (auto unclosed = unclosed_quote(yaml, documents, source_name))
        throw ConfigInvalid({std::move(*unclosed)});
    if (documents.empty() || documents.front().IsNull()) {
        throw ConfigInvalid(
            {{source_name, 0, 0, "", "the file is empty: it needs at least site and cameras"}});
    }
    if (documents.size() > 1) {
        // yaml-cpp would silently read the first document only.
        reader.error(documents[1], "", "a second YAML document ('---'): the configuration is one document");
    }
    const YAML::Node& root = documents.front();
    Gateway g;
    try {
        g = detail::read_document(reader, root);
    } catch (const YAML::Exception& e) {
        // A node shape the reader did not expect; still reported with its place.
        reader.errors.push_back({source_name, e.mark.line + 1, e.mark.column + 1, "", e.msg});
    }
    if (!reader.errors.empty()) {
        sort_by_place(reader.errors);
        throw ConfigInvalid(std::move(reader.errors));
    }
    g.source_file = source_name;
    g.environment = std::move(reader.variables);
    return g;
}

Gateway load_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
        throw ConfigInvalid({{path, 0, 0, "", "cannot read the file: it is a folder"}});
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigInvalid(
            {{path, 0, 0, "", fmt::format("cannot read the file: {}", std::strerror(errno))}});
    }
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) throw ConfigInvalid({{path, 0, 0, "", "cannot read the file: read error"}});
    return load_string(text.str(), path);
}

}  // namespace kg::config
