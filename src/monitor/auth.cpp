#include "monitor/auth.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <random>

#include "web/trusted_proxies.hpp"

namespace kg::monitor {

bool constant_time_equal(const std::string& a, const std::string& b) {
    // Compare over the longer length so the time says nothing about the secret's length either.
    const std::size_t n = std::max(a.size(), b.size());
    unsigned diff = a.size() == b.size() ? 0u : 1u;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
        const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
        diff |= static_cast<unsigned>(x ^ y);
    }
    return diff == 0;
}

std::optional<std::string> base64_decode(const std::string& text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] != '='; ++i) {
        const int v = value(text[i]);
        if (v < 0) return std::nullopt;
        buffer = (buffer << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buffer >> bits) & 0xff);
        }
    }
    for (; i < text.size(); ++i)
        if (text[i] != '=') return std::nullopt;
    return out;
}

namespace {

std::string random_token() {
    std::random_device rd;  // /dev/urandom on Linux
    std::string out;
    for (int i = 0; i < 8; ++i) out += fmt::format("{:08x}", rd());
    return out;
}

std::optional<std::string> cookie(const Request& req, const std::string& name) {
    const auto it = req.find(http::field::cookie);
    if (it == req.end()) return std::nullopt;
    const std::string header(it->value());
    std::size_t pos = 0;
    while (pos < header.size()) {
        const auto end = header.find(';', pos);
        std::string part = header.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        const auto first = part.find_first_not_of(' ');
        if (first != std::string::npos) part = part.substr(first);
        if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return std::nullopt;
}

}  // namespace

Auth::Auth(std::vector<Operator> operators, Duration session_ttl)
    : operators_(std::move(operators)), ttl_(session_ttl) {}

std::optional<std::string> Auth::check_password(const std::string& name, const std::string& password) const {
    for (const auto& op : operators_) {
        if (!op.password.empty() && constant_time_equal(op.name, name) &&
            constant_time_equal(op.password, password))
            return op.name;
    }
    return std::nullopt;
}

// An IPv6 client by its /64: a host picks any address of its network, each with 5 free guesses.
// Names that are no operator's share one count per address: keyed by the name sent, a guesser
// filled the table with made-up names (4 100 in under a second) until its count at a real name
// was evicted, five free guesses again each time, and names of 60 KB grew the room by 240 MB (the
// review of the 53rd session).
std::string Auth::guess_key(const std::string& client, const std::string& name) const {
    bool known = false;
    for (const auto& op : operators_) known |= constant_time_equal(op.name, name);
    return web::address_block(client) + '\n' + (known ? name : std::string("*"));
}

Duration Auth::retry_after_locked(const std::string& key, SteadyPoint now) const {
    const auto it = guesses_.find(key);
    if (it == guesses_.end() || it->second.failed < kFreeGuesses || now - it->second.last > kGuessWindow)
        return Duration::zero();
    const int over = std::min(it->second.failed - kFreeGuesses, 6);  // 2^6 s is past the cap
    const Duration wait = std::min<Duration>(std::chrono::seconds(1 << over), kMaxGuessWait);
    const auto left = it->second.last + wait - now;
    return left > Duration::zero() ? std::chrono::ceil<Duration>(left) : Duration::zero();
}

Duration Auth::retry_after(const std::string& client, const std::string& name) {
    std::lock_guard lock(mutex_);
    return retry_after_locked(guess_key(client, name), steady_now_());
}

std::optional<std::string> Auth::checked_password(const std::string& name, const std::string& password,
                                                  const std::string& client) {
    const std::string key = guess_key(client, name);
    std::lock_guard lock(mutex_);
    const auto now = steady_now_();
    // Checked and counted under one lock: parallel requests cannot all pass before one is counted.
    if (retry_after_locked(key, now) > Duration::zero()) return std::nullopt;
    auto who = check_password(name, password);
    if (who) {
        guesses_.erase(key);
        return who;
    }
    if (!guesses_.contains(key) && guesses_.size() >= kMaxGuessers) {
        std::erase_if(guesses_, [&](const auto& kv) { return now - kv.second.last > kGuessWindow; });
        // Still full (thousands of addresses at once): the one guessed at longest ago among those
        // not held up goes, never a whole map whose clearing would reset the guesser's own count;
        // only when every one is held up, the oldest of all.
        if (guesses_.size() >= kMaxGuessers) {
            const auto older = [](const auto& a, const auto& b) { return a.second.last < b.second.last; };
            auto victim = guesses_.end();
            for (auto it = guesses_.begin(); it != guesses_.end(); ++it)
                if (it->second.failed < kFreeGuesses && (victim == guesses_.end() || older(*it, *victim)))
                    victim = it;
            if (victim == guesses_.end()) victim = std::min_element(guesses_.begin(), guesses_.end(), older);
            guesses_.erase(victim);
        }
    }
    auto& g = guesses_[key];
    if (g.failed > 0 && now - g.last > kGuessWindow) g.failed = 0;
    ++g.failed;
    g.last = now;
    return std::nullopt;
}

std::optional<std::string> Auth::identify(const Request& req, TimePoint now, const std::string& client) {
    return signed_in_as(req, now, client, true);
}

std::optional<std::string> Auth::signed_in_as(const Request& req, TimePoint now, const std::string& client,
                                              bool count_guesses) {
    if (const auto token = cookie(req, kSessionCookie)) {
        std::lock_guard lock(mutex_);
        std::erase_if(sessions_, [&](const auto& kv) { return kv.second.expires < now; });
        if (const auto it = sessions_.find(*token); it != sessions_.end()) return it->second.name;
    }
    const auto it = req.find(http::field::authorization);
    if (it == req.end()) return std::nullopt;
    const std::string value(it->value());
    // Schemes are case-insensitive (RFC 9110 11.1).
    const auto scheme = [&](boost::beast::string_view name) {
        return value.size() > name.size() && boost::beast::iequals(value.substr(0, name.size()), name);
    };
    if (scheme("Bearer ")) {
        const std::string token = value.substr(7);
        for (const auto& op : operators_)
            if (!op.token.empty() && constant_time_equal(op.token, token)) return op.name;
        return std::nullopt;
    }
    if (const auto basic = basic_credentials(req)) {
        // A stream's recheck neither counts, clears nor waits on guesses (see still_valid).
        return count_guesses ? checked_password(basic->name, basic->password, client)
                             : check_password(basic->name, basic->password);
    }
    return std::nullopt;
}

std::optional<BasicCredentials> basic_credentials(const Request& req) {
    const auto it = req.find(http::field::authorization);
    // Schemes are case-insensitive (RFC 9110 11.1).
    if (it == req.end() || it->value().size() <= 6 ||
        !boost::beast::iequals(it->value().substr(0, 6), "Basic "))
        return std::nullopt;
    const auto decoded = base64_decode(std::string(it->value().substr(6)));
    const auto colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) return std::nullopt;
    return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

std::optional<std::string> Auth::login(const std::string& name, const std::string& password, TimePoint now,
                                       const std::string& client) {
    const auto who = checked_password(name, password, client);
    if (!who) return std::nullopt;
    auto token = random_token();
    std::lock_guard lock(mutex_);
    sessions_[token] = {*who, now + ttl_};
    return token;
}

bool Auth::still_valid(const Request& req, TimePoint now) {
    return signed_in_as(req, now, {}, false).has_value();
}

void Auth::logout(const Request& req) {
    if (const auto token = cookie(req, kSessionCookie)) {
        std::lock_guard lock(mutex_);
        sessions_.erase(*token);
    }
}

}  // namespace kg::monitor
