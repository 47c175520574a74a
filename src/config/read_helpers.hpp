#pragma once
// What the readers of the gateway's configuration share (config_loader.cpp and the read_*.cpp files;
// nothing outside src/config includes it): the Reader with the gateway's typed values and its wording
// of errors, and the checks of ids and of a URL's host and port.

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/short_text.hpp"
#include "config/config_loader.hpp"
#include "config/yaml_reader.hpp"

namespace kg::config::detail {

// 1-64 letters, digits, '_' or '-' (valid_id); also a zone's and a model's name.
extern const std::regex kIdPattern;

// The gateway's typed values and its wording of errors.
class Reader : public YamlReader {
public:
    using YamlReader::YamlReader;

    struct Entry {
        std::string name;
        YAML::Node key, value;
    };
    // The plain-name entries of a map already checked by map_of_names(), first copy of a repeat only.
    static std::vector<Entry> entries(const YAML::Node& node) {
        std::vector<Entry> out;
        std::set<std::string> seen;
        for (const auto& kv : node) {
            if (kv.first.IsScalar() && seen.insert(kv.first.Scalar()).second)
                out.push_back({kv.first.Scalar(), kv.first, kv.second});
        }
        return out;
    }

    // Every scalar goes through text(), so a number or a duration may come from the environment
    // as well as a password.
    bool string(const YAML::Node& node, const std::string& path, std::string& out) {
        return text(node, path, "a string", out);
    }

    // A label or unit that goes out in every event (common/short_text.hpp: the room refuses longer).
    bool short_text(const YAML::Node& node, const std::string& path, std::string& out, std::size_t max_bytes,
                    bool may_be_empty = false) {
        std::string t;
        if (!string(node, path, t)) return false;
        if (!(may_be_empty && t.empty()) && !is_short_text(t, max_bytes)) {
            error(node, path,
                  fmt::format("expected a text of {} to {} bytes without control characters",
                              may_be_empty ? 0 : 1, max_bytes));
            return false;
        }
        out = std::move(t);
        return true;
    }

    bool boolean(const YAML::Node& node, const std::string& path, bool& out) {
        std::string t;
        if (!text(node, path, "true or false", t)) return false;
        if (!YAML::convert<bool>::decode(YAML::Node(t), out)) {
            error(node, path, fmt::format("expected true or false, not '{}'", t));
            return false;
        }
        return true;
    }

    bool integer(const YAML::Node& node, const std::string& path, int& out, int min, int max) {
        std::string t;
        if (!text(node, path, "an integer", t)) return false;
        long long v = 0;
        if (!YAML::convert<long long>::decode(YAML::Node(t), v)) {
            error(node, path, fmt::format("expected an integer, not '{}'", t));
            return false;
        }
        if (v < min || v > max) {
            error(node, path, fmt::format("{} is out of range ({}..{})", v, min, max));
            return false;
        }
        out = static_cast<int>(v);
        return true;
    }

    bool number(const YAML::Node& node, const std::string& path, double& out, double min, double max,
                bool min_exclusive = false) {
        std::string t;
        if (!text(node, path, "a number", t)) return false;
        double v = 0;
        if (!YAML::convert<double>::decode(YAML::Node(t), v) || !std::isfinite(v)) {
            error(node, path, fmt::format("expected a number, not '{}'", t));
            return false;
        }
        if (v < min || v > max || (min_exclusive && v == min)) {
            const auto range =
                min_exclusive ? fmt::format("{} < value <= {}", min, max) : fmt::format("{}..{}", min, max);
            error(node, path, fmt::format("{} is out of range ({})", v, range));
            return false;
        }
        out = v;
        return true;
    }

    // allow_zero: for delays where "at once" is meaningful (confirm, clear, cooldown).
    bool duration(const YAML::Node& node, const std::string& path, Duration& out, bool allow_zero = false) {
        std::string t;
        if (!text(node, path, "a duration", t)) return false;
        Duration d{};
        if (!parse_duration(t, d)) {
            error(node, path,
                  fmt::format("'{}' is not a duration (seconds, or like 500ms, 10s, 5m, 1h30m, 7d)", t));
            return false;
        }
        if (!allow_zero && d.count() <= 0) {
            error(node, path, "must be longer than zero");
            return false;
        }
        out = d;
        return true;
    }

    bool size(const YAML::Node& node, const std::string& path, std::size_t& out, bool allow_zero = false) {
        std::string t;
        if (!text(node, path, "a size", t)) return false;
        std::size_t s = 0;
        if (!parse_size(t, s) || (s == 0 && !allow_zero)) {
            error(node, path, fmt::format("'{}' is not a size (like 512MiB, 2GB; under 1 EiB)", t));
            return false;
        }
        out = s;
        return true;
    }

    bool strings(const YAML::Node& node, const std::string& path, std::vector<std::string>& out) {
        if (!node.IsSequence()) {
            error(node, path, fmt::format("expected a list, not {}", describe(node)));
            return false;
        }
        std::vector<std::string> values;
        bool ok = true;
        for (std::size_t i = 0; i < node.size(); ++i) {
            std::string v;
            if (string(node[i], fmt::format("{}[{}]", path, i), v)) {
                values.push_back(v);
            } else {
                ok = false;
            }
        }
        if (ok) out = std::move(values);
        return ok;
    }

    bool id(const YAML::Node& node, const std::string& path, std::string& out) {
        if (!string(node, path, out)) return false;
        if (!valid_id(out)) {
            error(node, path,
                  fmt::format("'{}' is not a valid id: use 1-64 letters, digits, '_' or '-'", out));
            return false;
        }
        return true;
    }

protected:
    // Every copy of an unknown key is named, each at its own line.
    void unknown_key(const YAML::Node& at, const std::string& path, const std::string& key,
                     std::initializer_list<const char*> allowed, bool /*repeated*/) override {
        error(at, join(path, key), unknown_key_message(key, allowed));
    }

    std::string unset_variable(const std::string& name) const override {
        return fmt::format("environment variable '{}' is not set", name);
    }

private:
    static std::string unknown_key_message(const std::string& key,
                                           std::initializer_list<const char*> allowed);
};

bool starts_with(const std::string& s, std::string_view p);

// The URL as error messages show it: any password replaced, so that logs never carry it, and
// control characters escaped, so that the message stays one readable line.
std::string shown(const std::string& url);

// Checks host[:port] after a scheme. Returns an error message or "".
std::string check_authority(const std::string& rest);

}  // namespace kg::config::detail
