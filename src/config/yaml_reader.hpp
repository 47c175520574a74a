#pragma once
// What the gateway's and kitchen-monitor's YAML loaders share, so that both report a problem the
// same way (FILE:LINE:COL: KEY: MESSAGE) and check maps and ${NAME} values alike. Each loader
// derives its own reader with the typed values it needs.

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config_loader.hpp"

namespace kg::config {

// The key path of `key` under `path`; the root's path is "".
std::string join(const std::string& path, const std::string& key);
// What a node is, for "expected X, not Y" messages.
std::string describe(const YAML::Node& node);

// A quoted value whose closing quote is missing, found in `text` (what `documents` were loaded
// from): yaml-cpp 0.7 takes such a value to the end of the file, so `name: "厨房` swallowed every
// camera after it without a word. Nothing when every quote closes.
std::optional<ConfigError> unclosed_quote(const std::string& text, const std::vector<YAML::Node>& documents,
                                          const std::string& file);

// The allowed key nearest to a mistyped `key`, within an edit distance of 2; nothing when none is.
std::optional<std::string> closest_key(const std::string& key, std::initializer_list<const char*> allowed);

// Errors in the order of the file (line, then column), as an installer fixes them.
void sort_by_place(std::vector<ConfigError>& errors);

// Walks one document and collects every error with where it is.
class YamlReader {
public:
    // `base_dir`: where relative file paths start, the configuration file's folder.
    YamlReader(std::string file, std::filesystem::path base_dir);
    virtual ~YamlReader() = default;

    std::vector<ConfigError> errors;
    std::set<std::string> variables;  // the ${NAME}s the values read so far use

    void error(const YAML::Node& at, const std::string& key, std::string message);

    // A map whose keys are plain, distinct names. yaml-cpp keeps both copies of a repeated key and
    // reads the first, so a repeat is reported rather than half-applied. Remembers where each key
    // is, for messages about its value.
    bool map_of_names(const YAML::Node& node, const std::string& path, const char* what);
    // The same, and every key outside `allowed` reported at its own line.
    bool map(const YAML::Node& node, const std::string& path, std::initializer_list<const char*> allowed);

    // The scalar's text with ${NAME} replaced from the environment.
    bool text(const YAML::Node& node, const std::string& path, const char* what, std::string& out);

    std::filesystem::path resolve(const std::string& path) const;

    // A list of proxy addresses and networks ("127.0.0.1", "10.0.0.0/8"): each one checked, the
    // good ones kept in `out`.
    void trusted_proxies(const YAML::Node& node, const std::string& path, std::vector<std::string>& out);

protected:
    // The loaders word these two differently, and their tests and documentation quote the words.
    // `repeated`: the key was just reported as a duplicate.
    virtual void unknown_key(const YAML::Node& at, const std::string& path, const std::string& key,
                             std::initializer_list<const char*> allowed, bool repeated);
    virtual std::string unset_variable(const std::string& name) const;

private:
    bool keys(const YAML::Node& node, const std::string& path, const char* what,
              const std::initializer_list<const char*>* allowed);

    std::string file_;
    std::filesystem::path base_dir_;
    std::map<std::string, YAML::Mark> key_marks_;  // key path -> where its key was written
};

}  // namespace kg::config
