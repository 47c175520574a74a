#pragma once
// One connection to one camera through FFmpeg: demux, decode, scale. The worker makes a new
// FfmpegInput for every (re)connect, so a failed connection never leaves state behind.

#include <atomic>
#include <chrono>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/url_text.hpp"
#include "config/config.hpp"
#include "ingest/failure_cause.hpp"
#include "ingest/ffmpeg_ptr.hpp"
#include "ingest/picture_converter.hpp"
#include "ingest/timeline.hpp"

namespace kg::ingest {

class IngestError : public std::runtime_error {
public:
    enum class Kind { open, stall, read };
    IngestError(Kind kind, const std::string& what) : IngestError(kind, what, default_cause(kind)) {}
    IngestError(Kind kind, const std::string& what, FailureCause cause)
        : std::runtime_error(what), kind(kind), cause(cause) {}
    Kind kind;
    FailureCause cause;
    // The camera took the user and password but not for this stream (HTTP/RTSP 403: a channel the
    // user may not view), as against 401, the user or password refused.
    bool forbidden = false;

private:
    static FailureCause default_cause(Kind kind) {
        return kind == Kind::stall  ? FailureCause::stalled
               : kind == Kind::read ? FailureCause::dropped
                                    : FailureCause::error;
    }
};

// Sees every demuxed packet of the video stream before decoding (for remuxing outputs: clip
// ring, HLS, FLV). Called on the ingest thread; must not block. A connection whose probe found no
// picture size is opened at the first key frame that carries its size and parameter sets
// (ingest/parameter_sets.hpp; at the latest the third, opened unsized); the packets before are
// not shown.
class PacketObserver {
public:
    virtual ~PacketObserver() = default;
    virtual void on_stream_opened(const AVStream& stream) = 0;
    virtual void on_packet(const AVPacket& packet, const AVStream& stream) = 0;
    virtual void on_stream_closed() = 0;
};

// Sees every picture the decoder gives, as it comes out, before it is sampled for the analysis:
// an output that needs pictures (the privacy masker) takes them here instead of decoding the camera
// a second time. Called on the ingest thread; must not block, and must not keep `frame` (it is
// reused for the next picture). Not called for the pictures skipped with keyframes_only.
class FrameObserver {
public:
    virtual ~FrameObserver() = default;
    // `time_base`: the stream's, which the frame's timestamps are in (the packets' too).
    virtual void on_frame(const AVFrame& frame, AVRational time_base) = 0;
};

struct InputOptions {
    std::string url;
    config::Transport transport = config::Transport::tcp;
    std::chrono::milliseconds timeout{10000};
    bool keyframes_only = false;
    std::string device_format{};  // V4L2 only: FFmpeg's input_format; empty: the device's choice
};

// Registers FFmpeg's network and device inputs; call once at start-up, before any input opens.
void initialise_ffmpeg();

enum class SourceKind { network, file, device };
SourceKind classify_url(const std::string& url);
using kg::without_password;  // common/url_text.hpp: cameras' URLs as logs show them

class FfmpegInput {
public:
    // stop: set by the owner to abort any blocking call at once.
    FfmpegInput(InputOptions options, const std::atomic<bool>& stop);
    FfmpegInput(const FfmpegInput&) = delete;
    FfmpegInput& operator=(const FfmpegInput&) = delete;

    // Opens the input and its decoder. Throws IngestError (Kind::stall when the timeout hit).
    void open();

    // Reads packets until a frame is decoded. Returns false at the end of a file.
    // Throws IngestError on a stall or a read error. Decoder errors are counted, not thrown.
    bool next_frame();

    // Seeks a file back to its start (for looping). Returns false if it cannot. The packets and
    // frames that follow carry on the timeline where the previous pass ended: a looped file is one
    // continuous stream to every output and to the pacing, never a jump back in time.
    bool rewind();

    // Converts the current frame to BGR at image's size (image must be allocated: CV_8UC3).
    void scale_into(cv::Mat& image);

    double frame_time() const;  // seconds, stream clock
    bool frame_is_key() const;
    // The shape the last picture is shown in: width / height, times its sample aspect ratio when
    // the stream gives one (a D1 camera's 704x576 with 12:11 is 4:3); 0 before any picture.
    double display_aspect() const;
    SourceKind kind() const { return kind_; }
    std::uint64_t decode_errors() const { return decode_errors_; }
    // Pictures decoded with errors, their damaged parts concealed, this connection.
    std::uint64_t frames_damaged() const { return frames_damaged_; }
    // RTP packets that never came (gaps in their sequence numbers: RTP over UDP), this connection.
    std::uint64_t packets_lost() const { return packets_lost_; }
    // Jumps of the source's clock absorbed so far (see Timeline), and the size of the latest one in
    // seconds (negative: back).
    std::uint64_t timeline_jumps() const { return timeline_jumps_; }
    double last_jump_seconds() const { return last_jump_seconds_; }
    // Steps back of the source's clock (of at most Timeline::kMaxBackSeconds) absorbed so far, and
    // their sizes added up, in seconds (negative).
    std::uint64_t timeline_steps() const { return timeline_steps_; }
    double timeline_steps_seconds() const { return timeline_steps_seconds_; }
    // Times the camera changed its picture size within a connection (its settings changed, an NVR
    // switching streams): each time the outputs were told of a new stream. The latest change as
    // "640x360 to 1280x720".
    std::uint64_t picture_changes() const { return picture_changes_; }
    const std::string& last_picture_change() const { return last_picture_change_; }
    std::string describe() const;  // "h264 1920x1080 25fps" for the log
    void set_packet_observer(PacketObserver* observer) { observer_ = observer; }
    void set_frame_observer(FrameObserver* observer) { frame_observer_ = observer; }

private:
    static int interrupt_cb(void* opaque);
    void arm_deadline();
    std::int64_t timeout_ns() const;
    // At a key frame of an announced stream: the picture changed since the key frame before?
    void renew_if_changed(AVStream& stream);
    // The current picture was decoded from packets before the last renewal: it has the old
    // picture's size, and the frame observer, told of the new stream, must not get it.
    bool before_renewal();

    InputOptions options_;
    const std::atomic<bool>& stop_;
    SourceKind kind_;
    std::atomic<std::int64_t> deadline_ns_{0};
    bool timed_out_ = false;    // the current call's deadline interrupted it
    bool interrupted_ = false;  // a deadline interrupted a read of this connection: it has stalled
    // While an RTSP input opens: the latest answer seen (steady ns) and the opening's own limit,
    // kOpeningAnswers timeouts after its start (0: not opening an RTSP input).
    static constexpr std::int64_t kOpeningAnswers = 8;
    std::int64_t answered_ns_ = 0;
    std::int64_t opening_until_ns_ = 0;

    FormatContextPtr format_;
    CodecContextPtr codec_;
    PacketPtr packet_;
    FramePtr frame_;
    PictureConverter converter_;
    int stream_index_ = -1;
    bool draining_ = false;
    // When the decoder last gave a picture (or the stream opened): a camera that keeps sending
    // packets the decoder never turns into a picture (no key frame to start from) is a stall too.
    std::chrono::steady_clock::time_point last_picture_{};
    std::chrono::steady_clock::time_point last_video_packet_{};  // of the stream decoded: its audio aside
    std::uint64_t decode_errors_ = 0, frames_damaged_ = 0;
    bool marks_damage_ = false;      // the decoder flags the pictures it concealed (H.264's)
    bool damage_until_key_ = false;  // else: an error met since the last key frame
    std::uint64_t packets_lost_ = 0;
    // Every packet is placed on it before anyone sees it: a looped file or a camera whose clock
    // jumps is one continuous stream to every output and to the pacing.
    std::optional<Timeline> timeline_;
    std::uint64_t timeline_jumps_ = 0, timeline_steps_ = 0;
    double last_jump_seconds_ = 0.0, timeline_steps_seconds_ = 0.0;
    PacketObserver* observer_ = nullptr;
    FrameObserver* frame_observer_ = nullptr;
    // A network source without timestamps: its packets are stamped by arrival, in ms since its first.
    bool arrival_stamps_ = false;
    std::int64_t first_arrival_ns_ = -1, last_arrival_ms_ = -1;
    bool announced_ = false;    // observer_ told of this connection (on_stream_opened)
    int key_frames_tried_ = 0;  // without the size they lack, before it is told
    // The picture size the last key frame's parameter sets gave in this connection: a key frame
    // giving another is a change of the camera's picture, told to the outputs as a new stream.
    std::optional<std::pair<int, int>> key_size_;
    std::uint64_t picture_changes_ = 0;
    // At a renewal the decoder may still hold pictures of the old size (a camera with B-frames),
    // which come out after the new stream was told: their size, and how many may still come.
    std::pair<int, int> stale_size_{0, 0};
    int stale_left_ = 0;
    std::string last_picture_change_;
};

}  // namespace kg::ingest
