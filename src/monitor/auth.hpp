#pragma once
// Who is asking: the operators of the monitoring room, from the configuration only (no default
// account). A request speaks for an operator through a session cookie (the dashboard, after a
// sign-in with name and password), a bearer token (scripts), or HTTP Basic. Every action is
// recorded under that name, never under a name the request body claims.

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/web_server.hpp"

namespace kg::monitor {

inline constexpr const char* kSessionCookie = "kgm_session";

class Auth {
public:
    Auth(std::vector<Operator> operators, Duration session_ttl);

    std::optional<std::string> identify(const Request& req, TimePoint now);
    // A new session token for a correct name and password.
    std::optional<std::string> login(const std::string& name, const std::string& password, TimePoint now);
    void logout(const Request& req);
    Duration session_ttl() const { return ttl_; }

private:
    std::optional<std::string> check_password(const std::string& name, const std::string& password) const;

    std::vector<Operator> operators_;
    Duration ttl_;
    std::mutex mutex_;
    struct Session {
        std::string name;
        TimePoint expires;
    };
    std::map<std::string, Session> sessions_;
};

// Equal strings, in a time that does not depend on where they differ.
bool constant_time_equal(const std::string& a, const std::string& b);
std::optional<std::string> base64_decode(const std::string& text);

}  // namespace kg::monitor
