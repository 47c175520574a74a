#include "app/camera_input.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace kg::app {
namespace {

// "{site}" and "{camera}" in the push URL template become this camera's ids.
std::string rtmp_url(std::string url, const std::string& site, const std::string& camera) {
    for (const auto& [key, value] :
         {std::pair<std::string, std::string>{"{site}", site}, {"{camera}", camera}}) {
        for (auto at = url.find(key); at != std::string::npos; at = url.find(key, at + value.size()))
            url.replace(at, key.size(), value);
    }
    return url;
}

std::optional<stream::FeedOptions> feed_options(const config::Camera& camera, const config::Gateway& site) {
    if (!camera.is_public || site.public_side.listen.empty()) return std::nullopt;
    const auto& pub = site.public_side;
    stream::FeedOptions feed;
    feed.camera = camera.id;
    feed.hls_folder = pub.hls_dir + "/" + site.site.id + "/" + camera.id;
    feed.segment_seconds = static_cast<int>(
        std::max<long>(1, std::chrono::duration_cast<std::chrono::seconds>(pub.segment).count()));
    if (!pub.rtmp_push.empty()) feed.rtmp_url = rtmp_url(pub.rtmp_push, site.site.id, camera.id);
    if (!camera.privacy_masks.empty()) {
        stream::PrivacyOptions privacy;
        for (const auto& m : camera.privacy_masks) {
            rules::Polygon poly;
            for (const auto& p : m) poly.push_back({p.x, p.y});
            privacy.masks.push_back(std::move(poly));
        }
        privacy.width = pub.privacy_width;
        privacy.fps = pub.privacy_fps;
        // The ingest decodes every picture for the checks: the masker takes those instead of
        // decoding the camera again (5 % of a core for a 720p camera here). With key frames
        // only, the ingest decodes too few for the feed, and the masker decodes its own.
        privacy.frames_from_input = !camera.analysis.keyframes_only;
        feed.privacy = std::move(privacy);
    }
    return feed;
}

}  // namespace

CameraInput::Spec CameraInput::spec_of(const config::Camera& camera, const config::Gateway& site) {
    return {camera.id, camera.url, camera.input, camera.analysis, feed_options(camera, site), site.log.json};
}

CameraInput::CameraInput(const config::Camera& camera, Spec spec, ingest::LoginGate* logins,
                         std::shared_ptr<spdlog::logger> log, std::shared_ptr<spdlog::logger> feed_log)
    : spec_(std::move(spec)), log_(std::move(log)), feed_log_(std::move(feed_log)) {
    if (logins == nullptr) own_logins_ = std::make_unique<ingest::LoginGate>();
    worker_ = std::make_unique<ingest::CameraWorker>(
        camera, frames_, stats_, logins != nullptr ? *logins : *own_logins_, [this] { frame_arrived(); },
        log_);
}

CameraInput::~CameraInput() { stop(); }

void CameraInput::start() {
    if (started_) return;
    started_ = true;
    if (spec_.feed) {
        feed_ = std::make_unique<stream::PublicFeed>(*spec_.feed, feed_log_);
        feed_->set_open(open_);
        if (spec_.feed->privacy && spec_.feed->privacy->frames_from_input)
            worker_->set_frame_observer(feed_.get());
    }
    worker_->set_packet_observer(this);
    worker_->start();
}

void CameraInput::stop() { worker_->stop(); }

void CameraInput::set_frame_listener(std::function<void()> listener) {
    std::function<void()> before;  // let go outside the lock: it may own what it calls
    {
        std::lock_guard lock(listener_mutex_);
        before = std::exchange(listener_, std::move(listener));
    }
}

void CameraInput::frame_arrived() {
    std::lock_guard lock(listener_mutex_);
    if (listener_) listener_();
}

void CameraInput::set_clip_ring(ingest::PacketObserver* ring) {
    std::lock_guard lock(ring_mutex_);
    ring_ = ring;
    ring_told_ = false;
}

void CameraInput::set_log_level(spdlog::level::level_enum level) {
    log_->set_level(level);
    feed_log_->set_level(level);
}

void CameraInput::set_open(bool open) {
    open_ = open;
    if (feed_) feed_->set_open(open);
}

void CameraInput::on_stream_opened(const AVStream& stream) {
    {
        std::lock_guard lock(ring_mutex_);
        if (ring_ != nullptr) ring_->on_stream_opened(stream);
        ring_told_ = ring_ != nullptr;
    }
    if (feed_) feed_->on_stream_opened(stream);
}

void CameraInput::on_packet(const AVPacket& packet, const AVStream& stream) {
    {
        std::lock_guard lock(ring_mutex_);
        if (ring_ != nullptr) {
            if (!ring_told_) ring_->on_stream_opened(stream);
            ring_told_ = true;
            ring_->on_packet(packet, stream);
        }
    }
    if (feed_) feed_->on_packet(packet, stream);
}

void CameraInput::on_stream_closed() {
    {
        std::lock_guard lock(ring_mutex_);
        if (ring_ != nullptr && ring_told_) ring_->on_stream_closed();
        ring_told_ = false;
    }
    if (feed_) feed_->on_stream_closed();
}

}  // namespace kg::app
