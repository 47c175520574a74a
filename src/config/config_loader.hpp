#pragma once
// Loads and validates the gateway's YAML configuration. Every problem is reported at once, each
// with the file, line, column and key path, so an installer fixes them in one pass.

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace kg::config {

struct ConfigError {
    std::string file;
    int line = 0;  // 1-based; 0 when the whole file is concerned
    int column = 0;
    std::string key;  // dotted path, e.g. cameras[1].analysis.fps
    std::string message;

    // "FILE:LINE:COL: KEY: MESSAGE"
    std::string to_string() const;
};

class ConfigInvalid : public std::runtime_error {
public:
    explicit ConfigInvalid(std::vector<ConfigError> errors);
    std::vector<ConfigError> errors;
};

// Throws ConfigInvalid (also for an unreadable file or a YAML syntax error).
Gateway load_file(const std::string& path);
// `source_name` is used in messages and to resolve relative file paths (its directory).
Gateway load_string(const std::string& yaml, const std::string& source_name);

// What a valid configuration asks for that will not happen as its writer likely meant: each a
// sentence naming the key. Not errors: a configuration that ran before an upgrade keeps running
// (logged at start, printed by --check-config).
std::vector<std::string> doubts(const Gateway& g);

// "host:port", "[v6]:port" or "host" (port 502) of a tcp:// Modbus device's authority (what follows
// `tcp://`), as host and port; a path, query or user part is ignored.
std::pair<std::string, std::string> modbus_host_port(std::string authority);
// The connection a Modbus `device` names, to tell two spellings of one device apart (each would get
// a connection of its own, and a device that serves one client at a time would leave the second
// unread; two on one serial line would garble each other's frames): `tcp://host:port` with the host
// in lower case and the port written out, without a path; a serial line's device file with its
// links resolved (`/dev/serial/by-id/...` is `/dev/ttyUSB0`) when it exists now. Host names are not
// looked up: a name and an address of one device stay two.
std::string modbus_connection(const std::string& device);

// Whether `id` is one the configuration accepts for a site, camera, sensor or zone: 1-64 letters,
// digits, '_' or '-'.
bool valid_id(const std::string& id);

// "500ms", "10s", "5m", "1h30m", "7d", or a number of seconds.
bool parse_duration(const std::string& text, Duration& out);
// "512MiB", "2GB", "100k", or a number of bytes.
bool parse_size(const std::string& text, std::size_t& out);

}  // namespace kg::config
