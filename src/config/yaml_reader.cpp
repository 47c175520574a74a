#include "config/yaml_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/env.hpp"
#include "common/utf8.hpp"
#include "web/trusted_proxies.hpp"

namespace kg::config {

std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
}

std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Map:
            return "a map";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Scalar:
            return fmt::format("'{}'", node.Scalar());
        default:
            return "an empty value";
    }
}

namespace {

// Where the quoted scalar opening at `text[at]` closes, or npos when it runs to the end.
std::size_t closing_quote(const std::string& text, std::size_t at) {
    const char quote = text[at];
    for (std::size_t i = at + 1; i < text.size(); ++i) {
        if (quote == '"' && text[i] == '\\') {
            ++i;  // an escape: the next character is the value's
        } else if (text[i] == quote) {
            if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
                ++i;  // '' is a quote within a single-quoted value
            } else {
                return i;
            }
        }
    }
    return std::string::npos;
}

std::optional<YAML::Mark> first_unclosed(const std::string& text, const YAML::Node& node) {
    if (node.IsScalar()) {
        // A quoted value's tag is "!"; its mark is its opening quote. A mark that does not point at
        // one (a block scalar, text yaml-cpp converted from UTF-16) is not looked into.
        const auto mark = node.Mark();
        if (node.Tag() != "!" || mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= text.size())
            return std::nullopt;
        const auto at = static_cast<std::size_t>(mark.pos);
        if (text[at] != '"' && text[at] != '\'') return std::nullopt;
        if (closing_quote(text, at) != std::string::npos) return std::nullopt;
        return mark;
    }
    if (node.IsSequence()) {
        for (const auto& item : node)
            if (auto found = first_unclosed(text, item)) return found;
    } else if (node.IsMap()) {
        for (const auto& kv : node) {
            if (auto found = first_unclosed(text, kv.first)) return found;
            if (auto found = first_unclosed(text, kv.second)) return found;
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<ConfigError> unclosed_quote(const std::string& text, const std::vector<YAML::Node>& documents,
                                          const std::string& file) {
    // yaml-cpp's positions start after a UTF-8 byte order mark (Notepad writes one): so does the
    // text looked into (the review of the first version: a file with one was not checked).
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    const std::string body = text.rfind(kBom, 0) == 0 ? text.substr(kBom.size()) : text;
    for (const auto& document : documents) {
        if (const auto mark = first_unclosed(body, document)) {
            return ConfigError{file, mark->line + 1, mark->column + 1, "",
                               fmt::format("YAML syntax error: the quote ({}) opening this value is never "
                                           "closed, so the value would run to the end of the file",
                                           body[static_cast<std::size_t>(mark->pos)])};
        }
    }
    return std::nullopt;
}

YamlReader::YamlReader(std::string file, std::filesystem::path base_dir)
    : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

void YamlReader::error(const YAML::Node& at, const std::string& key, std::string message) {
    // yaml-cpp marks an empty value (`mqtt:`) where the next token starts, often the next line;
    // its key's position is where the reader looks.
    auto mark = at.Mark();
    if (at.IsNull()) {
        if (auto it = key_marks_.find(key); it != key_marks_.end()) mark = it->second;
    }
    errors.push_back({file_, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0, key,
                      std::move(message)});
}

bool YamlReader::map_of_names(const YAML::Node& node, const std::string& path, const char* what) {
    return keys(node, path, what, nullptr);
}

bool YamlReader::map(const YAML::Node& node, const std::string& path,
                     std::initializer_list<const char*> allowed) {
    return keys(node, path, "a map of keys", &allowed);
}

bool YamlReader::keys(const YAML::Node& node, const std::string& path, const char* what,
                      const std::initializer_list<const char*>* allowed) {
    if (!node.IsMap()) {
        error(node, path, fmt::format("expected {}, not {}", what, describe(node)));
        return false;
    }
    std::map<std::string, int> first_line;
    for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
            error(kv.first, path, fmt::format("a key must be a plain name, not {}", describe(kv.first)));
            continue;
        }
        const auto key = kv.first.Scalar();
        key_marks_[join(path, key)] = kv.first.Mark();
        const auto [first, fresh] = first_line.emplace(key, kv.first.Mark().line + 1);
        if (!fresh) {
            error(kv.first, join(path, key),
                  fmt::format("duplicate key '{}' (first on line {})", key, first->second));
        }
        if (allowed &&
            std::none_of(allowed->begin(), allowed->end(), [&](const char* a) { return key == a; }))
            unknown_key(kv.first, path, key, *allowed, !fresh);
    }
    return true;
}

bool YamlReader::text(const YAML::Node& node, const std::string& path, const char* what, std::string& out) {
    if (!node.IsScalar()) {
        error(node, path, fmt::format("expected {}, not {}", what, describe(node)));
        return false;
    }
    std::string missing;
    if (!expand_env(node.Scalar(), out, missing, &variables)) {
        error(node, path, unset_variable(missing));
        return false;
    }
    // Notepad on a Chinese Windows saves "ANSI", GBK: such a name went into every JSON message and
    // MQTT topic payload, and the first one written threw (the gateway crashed at each start).
    if (const auto at = invalid_utf8_at(out)) {
        error(node, path,
              fmt::format("not UTF-8 text (byte 0x{:02X} at offset {}): save the file as UTF-8 (in Notepad: "
                          "Save As, Encoding UTF-8)",
                          static_cast<unsigned char>(out[*at]), *at));
        return false;
    }
    return true;
}

void YamlReader::trusted_proxies(const YAML::Node& node, const std::string& path,
                                 std::vector<std::string>& out) {
    if (!node.IsSequence()) {
        error(node, path,
              fmt::format("expected a list of addresses or networks, e.g. [127.0.0.1, 10.0.0.0/8], not {}",
                          describe(node)));
        return;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const auto at = fmt::format("{}[{}]", path, i);
        std::string entry;
        if (!text(node[i], at, "an address or network", entry)) continue;
        if (auto why = web::TrustedProxies::problem(entry); !why.empty())
            error(node[i], at, why);
        else
            out.push_back(entry);
    }
}

std::filesystem::path YamlReader::resolve(const std::string& path) const {
    const std::filesystem::path p(path);
    return p.is_absolute() ? p : (base_dir_ / p).lexically_normal();
}

std::optional<std::string> closest_key(const std::string& key, std::initializer_list<const char*> allowed) {
    std::optional<std::string> closest;
    std::size_t best = 3;
    std::vector<std::size_t> row;
    for (const char* candidate : allowed) {
        const std::string_view b(candidate);
        // Levenshtein distance, one row at a time.
        row.resize(b.size() + 1);
        for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= key.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= b.size(); ++j) {
                const std::size_t up = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (key[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = up;
            }
        }
        if (row[b.size()] < best) {
            best = row[b.size()];
            closest = std::string(b);
        }
    }
    return closest;
}

void sort_by_place(std::vector<ConfigError>& errors) {
    std::stable_sort(errors.begin(), errors.end(), [](const ConfigError& a, const ConfigError& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
}

void YamlReader::unknown_key(const YAML::Node& at, const std::string& path, const std::string& key,
                             std::initializer_list<const char*> allowed, bool repeated) {
    if (repeated) return;  // its duplicate message already points at the line to fix
    std::string list;
    for (const auto* k : allowed) list += (list.empty() ? "" : ", ") + std::string(k);
    const auto closest = closest_key(key, allowed);
    error(at, join(path, key),
          fmt::format("unknown key (known here: {}){}", list,
                      closest ? fmt::format("; did you mean '{}'?", *closest) : ""));
}

std::string YamlReader::unset_variable(const std::string& name) const {
    return fmt::format("environment variable {} is not set", name);
}

}  // namespace kg::config
