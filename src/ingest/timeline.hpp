#pragma once
// One connection's packets on one continuous timeline, for every consumer of them: HLS, HTTP-FLV,
// RTMP, the privacy masker's encoder, the clip ring and its clips, and the analysis pacing. Sources'
// clocks jump: a camera resets its RTP clock, an NVR restarts a stream, NTP steps a camera's clock,
// and FFmpeg takes a jump back of more than 60 s on RTP (32 bits) or MPEG-TS (33 bits) for the clock
// wrapping, so it reaches us as a jump ahead of 13 or 26 hours. Muxers drop every packet not later
// than the last (a public stream frozen for good); a jump ahead makes a segment, a clip or an FLV
// gap a day long. So a jump is absorbed here, once, by an offset: the packets after it continue one
// frame after the last one before it. A file rewound for looping continues the same way.
//
// A step back of less than that (NTP stepping a camera's clock: chrony or ntpd at boot or after
// drift, by a few tenths of a second) is absorbed the same way: every muxer refuses a packet not later
// than the last one, so without it each output lost as much video as the clock stepped back, and a
// lost reference frame spoils the picture up to the next key frame. What decides is the decoding
// time: B-frames reorder presentation times but never decoding times, and jitter of a few ms keeps
// decoding times increasing (a step back of less than one frame loses nothing, so it is left as it
// is). A packet that only repeats the last time, or is less than a frame before it, is moved alone to
// one tick after the last (as `ffmpeg` does): the timeline does not move, so cameras that do it every
// few seconds do not make it drift ahead of their clock.

extern "C" {
#include <libavcodec/packet.h>
#include <libavutil/avutil.h>
}

#include <cstdint>
#include <optional>

namespace kg::ingest {

class Timeline {
public:
    // Steps of the decoding time beyond these are jumps of the source's clock. Back: well past any
    // reordering or jitter (a camera's whole B-frame delay is a few frames). Ahead: past a real pause
    // of a camera that keeps its connection (input.timeout, 10 s by default, ends a longer silence).
    static constexpr double kMaxBackSeconds = 1.0;
    static constexpr double kMaxAheadSeconds = 10.0;

    // `time_base`: the stream's; `frame_ticks`: one frame in it (what a packet without a duration
    // lasts). `max_ahead_seconds`: the longest real pause (a connection's input.timeout, when longer
    // than kMaxAheadSeconds: a 15 s pause within a 30 s timeout was cut out of the clips and streams
    // as a clock fault, the ingest review).
    Timeline(AVRational time_base, std::int64_t frame_ticks, double max_ahead_seconds = kMaxAheadSeconds);

    // The source starts again from its beginning (a file rewound for looping): the next packet
    // continues where the last one ended. Expected, so not a jump.
    void restart() { restarted_ = true; }

    // A change of the source's clock absorbed at one packet.
    struct Shift {
        enum class Kind {
            jump,  // more than kMaxBackSeconds back or kMaxAheadSeconds ahead: reset, restarted, wrapped
            step,  // back by a frame to kMaxBackSeconds: the packet was not later than the last one
        };
        Kind kind;
        double seconds;  // from where the timeline was to continue (negative: back)
    };

    // Moves `packet` (pts and dts) onto the continuous timeline. When the source's clock jumped or
    // stepped back at this packet: which, and by how much.
    std::optional<Shift> place(AVPacket& packet);

private:
    AVRational time_base_;
    std::int64_t frame_ticks_, max_back_, max_ahead_;
    std::int64_t offset_ = 0;                 // added to every timestamp of the source
    std::int64_t last_dts_ = AV_NOPTS_VALUE;  // placed
    std::int64_t end_ = AV_NOPTS_VALUE;       // placed: where the latest packet ends
    bool restarted_ = false;
};

}  // namespace kg::ingest
