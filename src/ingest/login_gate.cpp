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

// %XX decoded, as FFmpeg decodes the user and password it sends: "Wr%40ng" and "Wr@ng" are one
// password to the camera.
std::string percent_decoded(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// The wait after a login refused `before` times in a row already: 1, 2, 4, 8, then 15 minutes.
std::chrono::milliseconds refused_wait(int before) {
    return std::min<std::chrono::milliseconds>(LoginGate::kRefusedMax,
                                               LoginGate::kRefusedFirst * (1LL << std::min(before, 4)));
}

}  // namespace

std::string LoginGate::login_of(const std::string& url) {
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) return {};
    const std::string scheme = lower(std::string_view(url).substr(0, scheme_end));
    if (scheme == "file") return {};
    const auto authority_begin = scheme_end + 3;
    const auto authority_end = url.find_first_of("/?#", authority_begin);
    const std::string_view authority = std::string_view(url).substr(
        authority_begin,
        authority_end == std::string::npos ? std::string::npos : authority_end - authority_begin);
    // The last '@': a password may hold one unescaped (cameras' own pages allow it, FFmpeg too).
    const auto at = authority.rfind('@');
    // No user: a login of its own (a password may be in the path or query, as XMEye's and Foscam's).
    if (at == std::string_view::npos || at == 0) return "url " + url;
    std::string_view user = authority.substr(0, at), password;
    if (const auto colon = user.find(':'); colon != std::string_view::npos) {
        password = user.substr(colon + 1);
        user = user.substr(0, colon);
    }
    const std::string_view host_port = authority.substr(at + 1);
    if (host_port.empty()) return "url " + url;
    // [v6 address]:port, or host:port.
    std::string_view host = host_port, port;
    if (host_port.front() == '[') {
        const auto close = host_port.find(']');
        if (close == std::string_view::npos) return "url " + url;
        host = host_port.substr(0, close + 1);
        if (host_port.size() > close + 2 && host_port[close + 1] == ':') port = host_port.substr(close + 2);
    } else if (const auto colon = host_port.find(':'); colon != std::string_view::npos) {
        host = host_port.substr(0, colon);
        port = host_port.substr(colon + 1);
    }
    if (port.empty()) port = default_port(scheme);
    // :0554 is :554.
    while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
    // The user and password each decoded and length-prefixed: no way of writing them makes another
    // login's key.
    const auto user_text = percent_decoded(user), password_text = percent_decoded(password);
    return std::to_string(user_text.size()) + ":" + user_text + std::to_string(password_text.size()) + ":" +
           password_text + "@" + lower(host) + ":" + std::string(port);
}

LoginGate::Pass::Pass(Pass&& other) noexcept
    : gate_(std::exchange(other.gate_, nullptr)),
      login_(std::move(other.login_)),
      camera_(std::move(other.camera_)),
      turn_(other.turn_),
      after_unanswered_(std::move(other.after_unanswered_)) {}

LoginGate::Pass& LoginGate::Pass::operator=(Pass&& other) noexcept {
    if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
        login_ = std::move(other.login_);
        camera_ = std::move(other.camera_);
        turn_ = other.turn_;
        after_unanswered_ = std::move(other.after_unanswered_);
    }
    return *this;
}

LoginGate::Pass::~Pass() { release(); }

void LoginGate::Pass::release() {
    // A try that ended untold (stopped): it is the next camera's turn.
    if (gate_ != nullptr && turn_) gate_->release(login_);
    gate_ = nullptr;
}

void LoginGate::Pass::accepted() {
    if (gate_ != nullptr) gate_->accepted(login_, camera_, turn_);
    gate_ = nullptr;
}

LoginGate::Pass::Refusal LoginGate::Pass::refused(SteadyPoint now, bool forbidden) {
    if (gate_ == nullptr) return {};
    const auto refusal = gate_->refused(login_, camera_, turn_, forbidden, now);
    gate_ = nullptr;
    return refusal;
}

void LoginGate::Pass::unanswered(FailureCause cause, std::string text) {
    if (gate_ != nullptr && turn_) gate_->unanswered(login_, {camera_, cause, std::move(text), 0});
    gate_ = nullptr;
}

void LoginGate::ask(Login& l, const std::string& camera, SteadyPoint now) {
    // One that has stopped asking has left (stopped, reloaded away): it must not hold the turn. The
    // cameras sleeping out a refused wait ask again when it ends, and keep their places till then.
    const auto waited_to = l.known == Login::Known::refused ? l.next_try : SteadyPoint{};
    std::erase_if(l.queue, [&](const auto& q) {
        return q.first != camera && now - std::max(q.second, waited_to) > 3 * kAskAgain;
    });
    const auto it =
        std::find_if(l.queue.begin(), l.queue.end(), [&](const auto& q) { return q.first == camera; });
    if (it == l.queue.end()) {
        l.queue.emplace_back(camera, now);
    } else {
        it->second = now;
    }
}

std::variant<LoginGate::Pass, LoginGate::Wait> LoginGate::enter(const std::string& login,
                                                                const std::string& camera, SteadyPoint now) {
    if (login.empty()) return Pass();
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    if (const auto h = l.holds.find(camera); h != l.holds.end() && now < h->second.next_try)
        return Wait{h->second.next_try, h->second.next_try, h->second.refusals, camera, true, std::nullopt};
    // A login known to work is tried by every camera at once: the NVR's channels come back
    // together after an outage.
    if (l.known == Login::Known::accepted) return Pass(this, login, camera, false);
    ask(l, camera, now);
    const bool refused = l.known == Login::Known::refused;
    const auto refused_until = refused ? std::optional<SteadyPoint>(l.next_try) : std::nullopt;
    if (refused && now < l.next_try)
        return Wait{l.next_try, refused_until, l.refusals, l.refused, false, std::nullopt};
    // One try at a time, in the order the cameras asked.
    if (l.trying || l.queue.front().first != camera)
        return Wait{now + kAskAgain, refused_until, l.refusals, l.refused, false, l.unanswered};
    l.queue.erase(l.queue.begin());
    l.trying = camera;
    Pass pass(this, login, camera, true);
    if (l.unanswered && l.unanswered->camera != camera) pass.after_unanswered_ = l.unanswered;
    return pass;
}

void LoginGate::accepted(const std::string& login, const std::string& camera, bool turn) {
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    l.known = Login::Known::accepted;
    l.refusals = 0;
    l.refused.clear();
    l.refused_alone.clear();
    l.holds.erase(camera);
    l.queue.clear();
    l.unanswered.reset();
    if (turn) l.trying.reset();
}

LoginGate::Pass::Refusal LoginGate::hold(Login& l, const std::string& camera, SteadyPoint now) {
    auto& h = l.holds[camera];
    h.next_try = now + refused_wait(h.refusals);
    ++h.refusals;
    return {h.next_try, h.refusals, true};
}

LoginGate::Pass::Refusal LoginGate::refused(const std::string& login, const std::string& camera, bool turn,
                                            bool forbidden, SteadyPoint now) {
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    if (turn) l.trying.reset();
    // A 403: the user and password were taken, not for this stream (a channel the user may not
    // view). And a 401 on one camera of a login others stream with: its own (a path some cameras
    // answer 401 for). Either way that camera waits alone; the next camera may try now.
    if (forbidden) return hold(l, camera, now);
    if (l.known == Login::Known::accepted && (l.refused_alone.empty() || l.refused_alone.count(camera) > 0)) {
        l.refused_alone.insert(camera);
        return hold(l, camera, now);
    }
    if (l.known == Login::Known::refused && !turn) {
        // Let in before the login was refused (it was known to work): its refusal is the same
        // round's, not another in a row.
        return {l.next_try, l.refusals, false};
    }
    // The login's: refused by the camera whose try the others waited for, or by a second camera of
    // a login known to work (the password changed on the recorder), which counts as one.
    const int before = l.known == Login::Known::accepted ? 0 : l.refusals;
    l.refusals = before + 1;
    l.known = Login::Known::refused;
    l.next_try = now + refused_wait(before);
    l.refused = camera;
    l.refused_alone.clear();
    // The one refused tries last next time: another channel may be the one the user may view.
    std::erase_if(l.queue, [&](const auto& q) { return q.first == camera; });
    l.queue.emplace_back(camera, now);
    return {l.next_try, l.refusals, false};
}

void LoginGate::unanswered(const std::string& login, Unanswered u) {
    std::lock_guard lock(mutex_);
    auto& l = logins_[login];
    u.number = ++l.unanswered_count;
    l.unanswered = std::move(u);
    l.trying.reset();
}

void LoginGate::release(const std::string& login) {
    std::lock_guard lock(mutex_);
    logins_[login].trying.reset();
}

}  // namespace kg::ingest
