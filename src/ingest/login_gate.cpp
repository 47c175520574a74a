#include "ingest/login_gate.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

namespace kg::ingest {

namespace {

// The port a scheme uses when its URL names none: rtsp://host and rtsp://host:554 are one camera.
std::string_view default_port(std::string_view scheme) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kPorts{{
        {"rtsp", "554"},
        {"rtsps", "322"},
        {"rtspt", "554"},
        {"http", "80"},
        {"https", "443"},
        {"rtmp", "1935"},
        {"rtmps", "443"},
    }};
    for (const auto& [name, port] : kPorts)
        if (name == scheme) return port;
    return {};
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

}  // namespace

std::string LoginGate::login_of(const std::string& url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) return {};
    const std::string scheme = lower(std::string_view(url).substr(0, scheme_end));
    const auto authority_begin = scheme_end + 3;
    const auto authority_end = url.find_first_of("/?#", authority_begin);
    const std::string_view authority = std::string_view(url).substr(
        authority_begin,
        authority_end == std::string::npos ? std::string::npos : authority_end - authority_begin);
    // The last '@': a password may hold one unescaped (cameras' own pages allow it, FFmpeg too).
    const auto at = authority.rfind('@');
    if (at == std::string_view::npos || at == 0) return {};
    const std::string_view user_password = authority.substr(0, at);
    const std::string_view host_port = authority.substr(at + 1);
    if (host_port.empty()) return {};
    // [v6 address]:port, or host:port.
    std::string_view host = host_port, port;
    if (host_port.front() == '[') {
        const auto close = host_port.find(']');
        if (close == std::string_view::npos) return {};
        host = host_port.substr(0, close + 1);
        if (host_port.size() > close + 2 && host_port[close + 1] == ':') port = host_port.substr(close + 2);
    } else if (const auto colon = host_port.find(':'); colon != std::string_view::npos) {
        host = host_port.substr(0, colon);
        port = host_port.substr(colon + 1);
    }
    if (port.empty()) port = default_port(scheme);
    return std::string(user_password) + "@" + lower(host) + ":" + std::string(port);
}

LoginGate::Pass::Pass(Pass&& other) noexcept
    : gate_(std::exchange(other.gate_, nullptr)),
      login_(std::move(other.login_)),
      camera_(std::move(other.camera_)),
      turn_(other.turn_) {}

LoginGate::Pass& LoginGate::Pass::operator=(Pass&& other) noexcept {
    if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
        login_ = std::move(other.login_);
        camera_ = std::move(other.camera_);
        turn_ = other.turn_;
    }
    return *this;
}

LoginGate::Pass::~Pass() { release(); }

void LoginGate::Pass::release() {
    // A try that ended without an answer about the login (stopped, no such host, no answer): it is
    // the next camera's turn.
    if (gate_ != nullptr && turn_) gate_->release(login_);
    gate_ = nullptr;
}

void LoginGate::Pass::accepted() {
    if (gate_ != nullptr) gate_->accepted(login_, turn_);
    gate_ = nullptr;
}

LoginGate::Pass::Refusal LoginGate::Pass::refused(SteadyPoint now) {
    if (gate_ == nullptr) return {};
    const auto refusal = gate_->refused(login_, camera_, turn_, now);
    gate_ = nullptr;
    return refusal;
}

std::variant<LoginGate::Pass, LoginGate::Wait> LoginGate::enter(const std::string& login,
                                                                const std::string& camera, SteadyPoint now) {
    if (login.empty()) return Pass();
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    // A login known to work is tried by every camera at once: the NVR's channels come back
    // together after an outage. Should the password have been changed on the recorder meanwhile,
    // the channels reconnecting then are refused once each, and take turns from there.
    if (l.known == Login::Known::accepted) return Pass(this, login, camera, false);
    if (l.trying) return Wait{now + kAskAgain, l.refusals, l.refused};
    if (l.known == Login::Known::refused && now < l.next_try) return Wait{l.next_try, l.refusals, l.refused};
    l.trying = true;
    return Pass(this, login, camera, true);
}

void LoginGate::accepted(const std::string& login, bool turn) {
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    l.known = Login::Known::accepted;
    l.refusals = 0;
    l.refused.clear();
    if (turn) l.trying = false;
}

LoginGate::Pass::Refusal LoginGate::refused(const std::string& login, const std::string& camera, bool turn,
                                            SteadyPoint now) {
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    const auto wait =
        std::min<std::chrono::milliseconds>(kRefusedMax, kRefusedFirst * (1LL << std::min(l.refusals, 4)));
    ++l.refusals;
    // Channels refused together (the password changed on the recorder while they streamed) do not
    // shorten each other's wait.
    l.next_try = l.known == Login::Known::refused ? std::max(l.next_try, now + wait) : now + wait;
    l.known = Login::Known::refused;
    l.refused = camera;
    if (turn) l.trying = false;
    return {l.next_try, l.refusals};
}

void LoginGate::release(const std::string& login) {
    std::lock_guard lock(mutex_);
    logins_[login].trying = false;
}

}  // namespace kg::ingest
