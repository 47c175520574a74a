#pragma once
// Who is asking: the operators of the monitoring room, from the configuration only (no default
// account). A request speaks for an operator through a session cookie (the dashboard, after a
// sign-in with name and password), a bearer token (scripts), or HTTP Basic. Every action is
// recorded under that name, never under a name the request body claims.

#include <functional>
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

    // `client`: the address the request came from; password guesses are counted per address and
    // operator name.
    std::optional<std::string> identify(const Request& req, TimePoint now, const std::string& client = {});
    // A new session token for a correct name and password; none while `client` must wait for `name`.
    std::optional<std::string> login(const std::string& name, const std::string& password, TimePoint now,
                                     const std::string& client = {});
    // How long `client` must wait before a password for `name` is checked again (zero: it need not).
    // After kFreeGuesses wrong ones within kGuessWindow of each other, each further one doubles the
    // wait, from 1 s to at most kMaxGuessWait: a script guessing runs at one try a minute. Counted per
    // address and name, so that a right password of one operator does not clear guesses at another's,
    // and a guesser behind a shared reverse proxy holds up only the name it guesses. Bearer tokens and
    // sessions are never held up. Timed on the steady clock: a clock set back does not lock anyone out.
    Duration retry_after(const std::string& client, const std::string& name);
    static constexpr int kFreeGuesses = 5;
    static constexpr Duration kGuessWindow = std::chrono::minutes(15);
    static constexpr Duration kMaxGuessWait = std::chrono::minutes(1);
    // Tests: the steady clock the guesses are timed on.
    void set_steady_clock(std::function<SteadyPoint()> clock) { steady_now_ = std::move(clock); }
    void logout(const Request& req);
    // Whether the credentials of `req` still sign someone in (a session not ended, a token or a
    // password still configured), asked again of an open event stream. Unlike identify(), it
    // neither counts nor clears a password's guesses, nor waits on them: a stream asking every 15 s
    // cleared a guesser's count with its right password, and was ended by a guesser's count.
    bool still_valid(const Request& req, TimePoint now);
    // The key guesses are counted by: the client's address block and the operator's name, or '*'
    // for every name no operator has. Failed sign-ins are logged by it too.
    std::string guess_key(const std::string& client, const std::string& name) const;
    Duration session_ttl() const { return ttl_; }

private:
    std::optional<std::string> check_password(const std::string& name, const std::string& password) const;
    // identify(), and with `count_guesses` false still_valid(): a password is checked plainly.
    std::optional<std::string> signed_in_as(const Request& req, TimePoint now, const std::string& client,
                                            bool count_guesses);

    std::vector<Operator> operators_;
    Duration ttl_;
    std::mutex mutex_;
    struct Session {
        std::string name;
        TimePoint expires;
    };
    std::map<std::string, Session> sessions_;
    // A password check from `client`: a wrong one counts, a right one clears (its address and name).
    std::optional<std::string> checked_password(const std::string& name, const std::string& password,
                                                const std::string& client);
    Duration retry_after_locked(const std::string& key, SteadyPoint now) const;  // mutex_ held
    struct Guesses {
        int failed = 0;
        SteadyPoint last;
    };
    std::map<std::string, Guesses> guesses_;  // by address and operator name ('*': a name no operator has)
    static constexpr std::size_t kMaxGuessers = 4096;
    std::function<SteadyPoint()> steady_now_ = [] { return std::chrono::steady_clock::now(); };
};

// Equal strings, in a time that does not depend on where they differ.
bool constant_time_equal(const std::string& a, const std::string& b);
std::optional<std::string> base64_decode(const std::string& text);
// The name and password of an `Authorization: Basic` field, if it has one that reads.
struct BasicCredentials {
    std::string name, password;
};
std::optional<BasicCredentials> basic_credentials(const Request& req);

}  // namespace kg::monitor
