#include "web/viewer_counter.hpp"

#include <algorithm>
#include <set>
#include <string_view>

#include "web/trusted_proxies.hpp"

namespace kg::web {

void ViewerCounter::expire(Clock::time_point now) {
    std::erase_if(hls_, [&](const auto& e) { return now - e.second > window_; });
    std::erase_if(flv_, [](const Flv& f) {
        auto s = f.stream.lock();
        return !s || s->finished();
    });
}

std::size_t ViewerCounter::on_camera(const std::string& camera) const {
    std::size_t n = 0;
    for (const auto& [key, seen] : hls_) n += std::get<0>(key) == camera;
    for (const auto& f : flv_) n += f.camera == camera;
    return n;
}

std::size_t ViewerCounter::from_address(const std::string& address, const std::string* session,
                                        bool* session_known) const {
    // One page is one viewer, however many cameras it shows: its players share a session id. Counted
    // by camera, a page of 9 cameras could not show the ninth, and two reloads of one of 3 locked the
    // household out of all of them until the old sessions expired (the 55th session's review).
    std::set<std::string_view> sessions;
    for (const auto& [key, seen] : hls_) {
        if (std::get<1>(key) != address) continue;
        sessions.insert(std::get<2>(key));
        if (session && std::get<2>(key) == *session) *session_known = true;
    }
    std::size_t n = sessions.size();
    for (const auto& f : flv_) n += f.address == address;
    return n;
}

ViewerCounter::Admit ViewerCounter::check(const std::string& camera, const std::string& address,
                                          const std::string* session) const {
    if (on_camera(camera) >= limits_.per_camera) return Admit::camera_full;
    bool known = false;
    const auto n = from_address(address, session, &known);
    if (!known && n >= limits_.per_address) return Admit::address_full;
    return Admit::ok;
}

ViewerCounter::Admit ViewerCounter::session(const std::string& camera, const std::string& address,
                                            const std::string& session, Clock::time_point now, Seen seen) {
    std::lock_guard lock(mutex_);
    expire(now);
    const auto key = std::make_tuple(camera, address_block(address), session);
    if (auto it = hls_.find(key); it != hls_.end()) {
        if (seen != Seen::peek) it->second = now;
        return Admit::ok;
    }
    const auto admit = check(camera, std::get<1>(key), &session);
    if (admit == Admit::ok && seen == Seen::count) hls_.emplace(key, now);
    return admit;
}

ViewerCounter::Admit ViewerCounter::hls(const std::string& camera, const std::string& address,
                                        const std::string& session, Clock::time_point now) {
    return this->session(camera, address, session, now, Seen::count);
}

ViewerCounter::Admit ViewerCounter::peek_hls(const std::string& camera, const std::string& address,
                                             const std::string& session, Clock::time_point now) {
    return this->session(camera, address, session, now, Seen::peek);
}

ViewerCounter::Admit ViewerCounter::playlist(const std::string& camera, const std::string& address,
                                             const std::string& session, Clock::time_point now) {
    return this->session(camera, address, session, now, Seen::refresh);
}

ViewerCounter::Admit ViewerCounter::admit_flv(const std::string& camera, const std::string& address,
                                              Clock::time_point now) {
    std::lock_guard lock(mutex_);
    expire(now);
    return check(camera, address_block(address), nullptr);
}

void ViewerCounter::add_flv(const std::string& camera, const std::string& address,
                            const std::shared_ptr<LiveStream>& stream) {
    std::lock_guard lock(mutex_);
    flv_.push_back({camera, address_block(address), stream});
}

ViewerCounter::Count ViewerCounter::viewers(const std::string& camera, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    expire(now);
    Count c;
    for (const auto& [key, seen] : hls_) c.hls += std::get<0>(key) == camera;
    for (const auto& f : flv_) c.flv += f.camera == camera;
    return c;
}

}  // namespace kg::web
