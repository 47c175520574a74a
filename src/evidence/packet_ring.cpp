#include "evidence/packet_ring.hpp"

#include <algorithm>

namespace kg::evidence {
namespace {

void free_codecpar(AVCodecParameters* p) { avcodec_parameters_free(&p); }

std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> copy_codecpar(const AVCodecParameters* src) {
    std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> copy(avcodec_parameters_alloc(),
                                                                          free_codecpar);
    if (copy && avcodec_parameters_copy(copy.get(), src) < 0) copy.reset();
    return copy;
}

}  // namespace

PacketRing::PacketRing(Duration keep, Duration longest_gop, std::size_t max_bytes,
                       std::shared_ptr<spdlog::logger> log)
    : keep_(keep),
      longest_gop_(std::max(2 * keep, longest_gop)),
      max_bytes_(max_bytes),
      log_(std::move(log)) {}

void PacketRing::on_stream_opened(const AVStream& stream) {
    std::lock_guard lock(mutex_);
    // A new connection may bring new parameters; old packets no longer decode with them.
    ring_.clear();
    bytes_ = 0;
    codecpar_ = copy_codecpar(stream.codecpar);
    time_base_ = stream.time_base;
}

void PacketRing::on_packet(const AVPacket& packet, const AVStream&) {
    const bool key = (packet.flags & AV_PKT_FLAG_KEY) != 0;
    std::lock_guard lock(mutex_);
    // A clip must start on a key frame: packets before the first one are useless.
    if (ring_.empty() && !key) return;
    PacketRef ref;
    ref.packet.reset(av_packet_clone(&packet));  // a new reference, not a copy of the data
    if (!ref.packet) return;
    ref.arrival = std::chrono::steady_clock::now();
    ref.key = key;
    bytes_ += static_cast<std::size_t>(packet.size);
    ring_.push_back(std::move(ref));
    trim(ring_.back().arrival);
}

void PacketRing::on_stream_closed() {}

void PacketRing::drop_first_gop() {
    auto next_key = std::find_if(ring_.begin() + 1, ring_.end(), [](const PacketRef& p) { return p.key; });
    for (auto it = ring_.begin(); it != next_key; ++it) bytes_ -= static_cast<std::size_t>(it->packet->size);
    ring_.erase(ring_.begin(), next_key);
}

void PacketRing::trim(std::chrono::steady_clock::time_point now) {
    while (bytes_ > max_bytes_ && !ring_.empty()) {
        if (!warned_bytes_ && log_) {
            warned_bytes_ = true;
            log_->warn(
                "evidence: {} MiB of one camera's video is held for clips; older GOPs go, and clips reach "
                "back {:.0f} s",
                max_bytes_ >> 20, std::chrono::duration<double>(now - ring_.front().arrival).count());
        }
        drop_first_gop();
    }
    if (ring_.empty()) return;  // one GOP over the bound went whole
    // Drop whole GOPs from the front while the second key frame is still older than `keep`, so
    // the ring always covers `keep` and always starts on a key frame.
    for (;;) {
        auto next_key =
            std::find_if(ring_.begin() + 1, ring_.end(), [](const PacketRef& p) { return p.key; });
        if (next_key == ring_.end() && !ring_.empty() && now - ring_.front().arrival > longest_gop_) {
            // One GOP longer than the ring holds whole (a camera that sends a key frame rarely, or
            // once): held on, it would grow with the bitrate for ever. Let it go; the ring starts
            // again at the next key frame, and a clip meanwhile is reported missing.
            ring_.clear();
            bytes_ = 0;
            return;
        }
        if (ring_.size() < 2 || next_key == ring_.end() || now - next_key->arrival < keep_) return;
        drop_first_gop();
    }
}

PacketSpan PacketRing::span(TimePoint from_time, TimePoint to_time, TimePoint now) const {
    // Wall-clock times as ages on the steady clock the packets were stamped with.
    const auto steady_now = std::chrono::steady_clock::now();
    const auto from =
        steady_now - std::chrono::duration_cast<std::chrono::steady_clock::duration>(now - from_time);
    const auto to =
        steady_now - std::chrono::duration_cast<std::chrono::steady_clock::duration>(now - to_time);
    return span(from, to);
}

PacketSpan PacketRing::span(SteadyPoint from, SteadyPoint to) const {
    PacketSpan out;
    std::lock_guard lock(mutex_);
    if (ring_.empty() || !codecpar_) return out;
    // The last key frame at or before `from` (or the first one held, if `from` is older).
    std::size_t start = 0;
    for (std::size_t i = 0; i < ring_.size() && ring_[i].arrival <= from; ++i) {
        if (ring_[i].key) start = i;
    }
    out.codecpar = copy_codecpar(codecpar_.get());
    out.time_base = time_base_;
    for (std::size_t i = start; i < ring_.size() && ring_[i].arrival <= to; ++i) {
        PacketRef ref;
        ref.packet.reset(av_packet_clone(ring_[i].packet.get()));
        ref.arrival = ring_[i].arrival;
        ref.key = ring_[i].key;
        if (ref.packet) out.packets.push_back(std::move(ref));
    }
    return out;
}

std::size_t PacketRing::packets() const {
    std::lock_guard lock(mutex_);
    return ring_.size();
}

std::size_t PacketRing::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

}  // namespace kg::evidence
