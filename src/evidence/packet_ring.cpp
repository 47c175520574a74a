#include "evidence/packet_ring.hpp"

#include <algorithm>

#include "stream/muxable.hpp"

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
    if (!current_.packets.empty()) {
        earlier_.push_back(std::move(current_));
        if (earlier_.size() > kEarlierRuns) earlier_.pop_front();
    }
    current_ = Run{};
    current_.codecpar = copy_codecpar(stream.codecpar);
    current_.time_base = stream.time_base;
    // Packets no clip can hold are not kept: a raw USB camera filled the ring's 96 MiB for clips
    // that all failed. The run keeps its parameters, so a clip asked of it says why.
    current_.clippable = stream::mp4_holds(stream.codecpar->codec_id);
    if (!current_.clippable && !said_unclippable_ && log_) {
        said_unclippable_ = true;
        log_->warn("no clips: {}", stream::unmuxable_reason(*stream.codecpar));
    }
}

void PacketRing::on_packet(const AVPacket& packet, const AVStream&) {
    const bool key = (packet.flags & AV_PKT_FLAG_KEY) != 0;
    std::lock_guard lock(mutex_);
    auto& ring = current_.packets;
    if (!current_.clippable) {
        trim(std::chrono::steady_clock::now());  // the connection before still ages out
        return;
    }
    // A clip must start on a key frame: packets before the first one are useless.
    if (ring.empty() && !key) return;
    PacketRef ref;
    ref.packet.reset(av_packet_clone(&packet));  // a new reference, not a copy of the data
    if (!ref.packet) return;
    ref.arrival = std::chrono::steady_clock::now();
    ref.key = key;
    current_.bytes += static_cast<std::size_t>(packet.size);
    ring.push_back(std::move(ref));
    trim(ring.back().arrival);
}

void PacketRing::on_stream_closed() {}

void PacketRing::drop_first_gop() {
    auto& ring = current_.packets;
    auto next_key = std::find_if(ring.begin() + 1, ring.end(), [](const PacketRef& p) { return p.key; });
    for (auto it = ring.begin(); it != next_key; ++it)
        current_.bytes -= static_cast<std::size_t>(it->packet->size);
    ring.erase(ring.begin(), next_key);
}

void PacketRing::trim(std::chrono::steady_clock::time_point now) {
    // The streams before go once no clip can start in them, or first when memory is short (the
    // oldest first).
    std::size_t bytes = current_.bytes;
    for (const auto& run : earlier_) bytes += run.bytes;
    while (!earlier_.empty() &&
           (now - earlier_.front().packets.back().arrival > keep_ || bytes > max_bytes_)) {
        bytes -= earlier_.front().bytes;
        earlier_.pop_front();
    }
    auto& ring = current_.packets;
    while (current_.bytes > max_bytes_ && !ring.empty()) {
        if (!warned_bytes_ && log_) {
            warned_bytes_ = true;
            log_->warn(
                "evidence: {} MiB of one camera's video is held for clips; older GOPs go, and clips reach "
                "back {:.0f} s",
                max_bytes_ >> 20, std::chrono::duration<double>(now - ring.front().arrival).count());
        }
        drop_first_gop();
    }
    if (ring.empty()) return;  // one GOP over the bound went whole
    // Drop whole GOPs from the front while the second key frame is still older than `keep`, so
    // the ring always covers `keep` and always starts on a key frame.
    for (;;) {
        auto next_key = std::find_if(ring.begin() + 1, ring.end(), [](const PacketRef& p) { return p.key; });
        if (next_key == ring.end() && !ring.empty() && now - ring.front().arrival > longest_gop_) {
            // One GOP longer than the ring holds whole (a camera that sends a key frame rarely, or
            // once): held on, it would grow with the bitrate for ever. Let it go; the ring starts
            // again at the next key frame, and a clip meanwhile is reported missing.
            ring.clear();
            current_.bytes = 0;
            return;
        }
        if (ring.size() < 2 || next_key == ring.end() || now - next_key->arrival < keep_) return;
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

PacketSpan PacketRing::span(SteadyPoint from, SteadyPoint to, std::optional<SteadyPoint> at) const {
    std::lock_guard lock(mutex_);
    // The stream that holds the event's moment first: a camera whose picture changed (or that
    // reconnected) a second after the event began held more of the span in its new stream, and the
    // clip, cut from there, showed the condition already under way, its start and pre-roll gone
    // (the evidence review).
    if (at) {
        const auto holds = [&](const Run& run) {
            return !run.packets.empty() && run.packets.front().arrival <= *at &&
                   *at <= run.packets.back().arrival;
        };
        if (holds(current_)) return span_of(current_, from, to);
        for (auto it = earlier_.rbegin(); it != earlier_.rend(); ++it) {
            if (holds(*it)) return span_of(*it, from, to);
        }
    }
    // One stream's packets: joined, the clip would mix two streams' timestamps and perhaps
    // parameters. Else the one that holds most of the span: an event cut by a reconnect in its post-roll
    // is the connection before (up to where it ended), one that began just after a reconnect, with
    // its pre-roll reaching back before it, the new one.
    const auto overlap = [&](const Run& run) {
        if (run.packets.empty()) return SteadyPoint::duration::zero();
        const auto begin = std::max(from, run.packets.front().arrival);
        const auto end = std::min(to, run.packets.back().arrival);
        return std::max(SteadyPoint::duration::zero(), end - begin);
    };
    const Run* best = &current_;
    auto most = overlap(current_);
    for (auto it = earlier_.rbegin(); it != earlier_.rend(); ++it) {  // the latest first: it wins a tie
        if (from > it->packets.back().arrival) continue;
        const auto held = overlap(*it);
        if (best->packets.empty() || held > most) {
            best = &*it;
            most = held;
        }
    }
    return span_of(*best, from, to);
}

PacketSpan PacketRing::span_of(const Run& run, SteadyPoint from, SteadyPoint to) {
    PacketSpan out;
    const auto& ring = run.packets;
    if (!run.clippable && run.codecpar) out.codecpar = copy_codecpar(run.codecpar.get());  // for the reason
    if (ring.empty() || !run.codecpar) return out;
    // The last key frame at or before `from` (or the first one held, if `from` is older).
    std::size_t start = 0;
    for (std::size_t i = 0; i < ring.size() && ring[i].arrival <= from; ++i) {
        if (ring[i].key) start = i;
    }
    out.codecpar = copy_codecpar(run.codecpar.get());
    out.time_base = run.time_base;
    for (std::size_t i = start; i < ring.size() && ring[i].arrival <= to; ++i) {
        PacketRef ref;
        ref.packet.reset(av_packet_clone(ring[i].packet.get()));
        ref.arrival = ring[i].arrival;
        ref.key = ring[i].key;
        if (ref.packet) out.packets.push_back(std::move(ref));
    }
    return out;
}

std::size_t PacketRing::packets() const {
    std::lock_guard lock(mutex_);
    std::size_t n = current_.packets.size();
    for (const auto& run : earlier_) n += run.packets.size();
    return n;
}

std::size_t PacketRing::bytes() const {
    std::lock_guard lock(mutex_);
    std::size_t n = current_.bytes;
    for (const auto& run : earlier_) n += run.bytes;
    return n;
}

}  // namespace kg::evidence
