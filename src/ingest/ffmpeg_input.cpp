#include "ingest/ffmpeg_input.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <opencv2/core.hpp>
#include <string_view>

#include "ingest/parameter_sets.hpp"

extern "C" {
#include <libavdevice/avdevice.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
}

namespace kg::ingest {
namespace {

// FFmpeg's own reason for a failure ("Failed to resolve hostname ...", "method SETUP failed: 453
// Not Enough Bandwidth") goes to its log, not into the error code the calls return, which often
// says only "Input/output error". Its last error line on this thread is kept for the message:
// FFmpeg's log is process-wide, but each camera opens and reads on its own thread.
thread_local std::string t_last_error;

// RTP packets lost on the way, on this thread's camera since the input last took the count. FFmpeg's
// RTP demuxer says each gap in the sequence numbers (RTP over UDP: over TCP nothing is lost) only
// in its log, and never counts them where a caller could read them.
thread_local std::uint64_t t_rtp_missed = 0;

// Error lines FFmpeg logged on this thread: a decoder that meets damage says so only there (H.265's
// marks none of its pictures, unlike H.264's).
thread_local std::uint64_t t_error_lines = 0;
constexpr const char* kRtpMissedFormat = "RTP: missed %d packets\n";  // libavformat/rtpdec.c

// When an RTSP answer's last line came on this thread (steady clock, ns): the handshake's progress.
// FFmpeg's RTSP demuxer traces each line of an answer, and says nothing else a caller could see as
// it goes from OPTIONS to PLAY.
thread_local std::int64_t t_rtsp_answer_ns = 0;
constexpr const char* kRtspLineFormat = "line='%s'\n";  // libavformat/rtsp.c, ff_rtsp_read_reply

// The password in any URL the line names (an RTSP URL in a redirect, say): logs leave the box.
std::string masked(const std::string& line) {
    std::string out;
    std::size_t from = 0;
    while (from < line.size()) {
        const auto space = std::min(line.find(' ', from), line.size());
        out += without_password(line.substr(from, space - from));
        if (space < line.size()) out += ' ';
        from = space + 1;
    }
    return out;
}

std::int64_t steady_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void keep_error_line(void* avcl, int level, const char* format, va_list args) {
    if (level == AV_LOG_TRACE && format != nullptr && std::strcmp(format, kRtspLineFormat) == 0) {
        t_rtsp_answer_ns = steady_now_ns();
        return;
    }
    if (level == AV_LOG_WARNING && format != nullptr && std::strcmp(format, kRtpMissedFormat) == 0) {
        va_list copy;
        va_copy(copy, args);
        const int missed = va_arg(copy, int);
        va_end(copy);
        // A gap is counted forward from the last packet given out, so it is under 2^16; anything
        // else is not a count of lost packets.
        if (missed > 0 && missed < 65536) t_rtp_missed += static_cast<std::uint64_t>(missed);
        return;
    }
    if (level > AV_LOG_ERROR) return;
    ++t_error_lines;
    char line[2048];
    int print_prefix = 0;  // without "[rtsp @ 0x...]": the camera is named by the caller
    va_list copy;
    va_copy(copy, args);
    av_log_format_line2(avcl, level, format, copy, line, sizeof line, &print_prefix);
    va_end(copy);
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
        text.pop_back();
    if (!text.empty()) t_last_error = masked(text);
}

// "cannot open: Input/output error (Failed to resolve hostname ...)": the code's text, and FFmpeg's
// reason when it logged one since `cleared`.
std::string with_reason(const std::string& what) {
    std::string reason;
    reason.swap(t_last_error);
    if (reason.empty() || what.find(reason) != std::string::npos) return what;
    return fmt::format("{} ({})", what, reason);
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// The path FFmpeg should open: file:// and v4l2:// are this project's spellings.
std::string ffmpeg_location(const std::string& url) {
    if (starts_with(url, "file://")) return url.substr(7);
    if (starts_with(url, "v4l2://")) return url.substr(7);
    return url;
}

}  // namespace

void initialise_ffmpeg() {
    avformat_network_init();
    avdevice_register_all();
    av_log_set_level(AV_LOG_FATAL);  // the ingest reports failures itself, with the camera id and cause
    av_log_set_callback(&keep_error_line);  // ... and FFmpeg's own reason (with_reason())
}

SourceKind classify_url(const std::string& url) {
    if (names_v4l2_device(url)) return SourceKind::device;
    for (std::string_view scheme : {"rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://"}) {
        if (starts_with(url, scheme)) return SourceKind::network;
    }
    return SourceKind::file;
}

FfmpegInput::FfmpegInput(InputOptions options, const std::atomic<bool>& stop)
    : options_(std::move(options)), stop_(stop), kind_(classify_url(options_.url)) {}

int FfmpegInput::interrupt_cb(void* opaque) {
    auto* self = static_cast<FfmpegInput*>(opaque);
    if (self->stop_.load(std::memory_order_relaxed)) return 1;
    const std::int64_t now = steady_now_ns();
    if (self->opening_until_ns_ != 0 && t_rtsp_answer_ns > self->answered_ns_) {
        // Each answer of the handshake gets the timeout again, up to the opening's own limit.
        self->answered_ns_ = t_rtsp_answer_ns;
        self->deadline_ns_.store(std::min(self->answered_ns_ + self->timeout_ns(), self->opening_until_ns_),
                                 std::memory_order_relaxed);
    }
    if (now > self->deadline_ns_.load(std::memory_order_relaxed)) {
        self->timed_out_ = true;
        self->interrupted_ = true;
        return 1;
    }
    return 0;
}

std::int64_t FfmpegInput::timeout_ns() const { return std::chrono::nanoseconds(options_.timeout).count(); }

void FfmpegInput::arm_deadline() {
    timed_out_ = false;
    deadline_ns_.store(steady_now_ns() + timeout_ns(), std::memory_order_relaxed);
}

void FfmpegInput::open() {
    AVFormatContext* raw = avformat_alloc_context();
    if (raw == nullptr) throw IngestError(IngestError::Kind::open, "out of memory");
    raw->interrupt_callback = {&FfmpegInput::interrupt_cb, this};

    AVDictionary* opts = nullptr;
    const AVInputFormat* format = nullptr;
    const std::string location = ffmpeg_location(options_.url);
    const auto timeout_us = std::to_string(std::chrono::microseconds(options_.timeout).count());
    if (starts_with(options_.url, "rtsp")) {
        av_dict_set(&opts, "rtsp_transport", options_.transport == config::Transport::udp ? "udp" : "tcp", 0);
        av_dict_set(&opts, "timeout", timeout_us.c_str(), 0);
    } else if (kind_ == SourceKind::network) {
        av_dict_set(&opts, "rw_timeout", timeout_us.c_str(), 0);
    } else if (kind_ == SourceKind::device) {
        format = av_find_input_format("video4linux2");
        if (format == nullptr) throw IngestError(IngestError::Kind::open, "FFmpeg has no video4linux2 input");
        if (!options_.device_format.empty())
            av_dict_set(&opts, "input_format", options_.device_format.c_str(), 0);
    }
    // Keep the probe short: cameras are live, and a long probe delays every reconnect.
    av_dict_set(&opts, "probesize", "2000000", 0);
    av_dict_set(&opts, "analyzeduration", "2000000", 0);

    arm_deadline();
    t_last_error.clear();
    t_rtp_missed = 0;
    // input.timeout bounds each answer of an RTSP handshake, as FFmpeg's own `timeout` does, not
    // all of them: a camera taking 1.6 s over each of OPTIONS, DESCRIBE, SETUP and PLAY never
    // connected with `timeout: 5s` (the ingest review). A handshake that goes on answering (a
    // 401 and DESCRIBE again, a SETUP per track) ends all the same at kOpeningAnswers timeouts.
    const std::int64_t open_start = steady_now_ns();
    answered_ns_ = t_rtsp_answer_ns;
    const bool opening_rtsp = starts_with(options_.url, "rtsp");
    opening_until_ns_ = opening_rtsp ? open_start + kOpeningAnswers * timeout_ns() : 0;
    int err = avformat_open_input(&raw, location.c_str(), format, &opts);
    opening_until_ns_ = 0;
    av_dict_free(&opts);
    if (err < 0) {
        // FFmpeg's own socket timeout (the same length) can end a silent step a moment before the
        // deadline does, and its RTSP demuxer then says "Invalid data found": no answer all the same.
        // Not where FFmpeg said a reason of its own (a name that does not resolve, however slowly).
        const std::int64_t now = steady_now_ns();
        const std::int64_t waited = now - std::max(open_start, t_rtsp_answer_ns);
        const bool silent =
            timed_out_ || (opening_rtsp && t_last_error.empty() && waited * 10 >= timeout_ns() * 9);
        // Answering all along, but not done within the opening's limit (a server that trickles).
        const bool too_long = timed_out_ && opening_rtsp && t_rtsp_answer_ns > open_start &&
                              now - open_start >= kOpeningAnswers * timeout_ns();
        // avformat_open_input frees the context on failure.
        const FailureCause cause = too_long ? FailureCause::error
                                   : silent ? FailureCause::unreachable
                                            : open_failure_cause(err, t_last_error);
        IngestError error(
            silent ? IngestError::Kind::stall : IngestError::Kind::open,
            too_long ? fmt::format("the camera answered, but its RTSP handshake did not end within {} ms",
                                   kOpeningAnswers * options_.timeout.count())
            : silent ? fmt::format("no answer within {} ms while opening", options_.timeout.count())
                     : with_reason(fmt::format("cannot open: {}", av_error_string(err))),
            cause);
        error.forbidden = !too_long && !silent && err == AVERROR_HTTP_FORBIDDEN;
        throw error;
    }
    format_.reset(raw);
    // HLS's demuxer gives a duration only to a finished playlist (#EXT-X-ENDLIST): a live one has
    // none. Finished, its encoder has stopped, and its segments are past video: read, they were
    // analysed as the kitchen now, and each reconnect replayed them, the camera online for as
    // long as they lasted and offline again after.
    if (kind_ == SourceKind::network && std::string_view(raw->iformat->name) == "hls" &&
        raw->duration != AV_NOPTS_VALUE) {
        throw IngestError(
            IngestError::Kind::open,
            fmt::format("the HLS playlist has ended (#EXT-X-ENDLIST, {:.0f} s of past video): its "
                        "encoder has stopped; tried again until it is live",
                        static_cast<double>(raw->duration) / AV_TIME_BASE),
            FailureCause::ended);
    }

    arm_deadline();
    t_last_error.clear();
    const auto probe_start = std::chrono::steady_clock::now();
    err = avformat_find_stream_info(format_.get(), nullptr);
    packets_lost_ += std::exchange(t_rtp_missed, 0);
    if (err < 0) {
        throw IngestError(timed_out_ ? IngestError::Kind::stall : IngestError::Kind::open,
                          with_reason(fmt::format("cannot read stream info: {}", av_error_string(err))),
                          timed_out_ ? FailureCause::no_video : FailureCause::error);
    }
    // Over UDP FFmpeg's own wait for RTP (its `timeout`, the same length) can end the probe a moment
    // before the deadline does, with success and a picture of 0x0: the camera was logged connected,
    // and failed one timeout later without the hint below (the ingest review, every try). A UDP
    // probe that took nearly the whole timeout and found no picture size got nothing. Not over TCP
    // or HTTP, whose probes end on their own: a camera slow to its first key frame gets its picture
    // size from it (the review of the first version of this).
    const bool rtp_over_udp =
        starts_with(options_.url, "rtsp") && options_.transport == config::Transport::udp;
    const auto probing = std::chrono::steady_clock::now() - probe_start;
    const int best = av_find_best_stream(format_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    const bool no_picture = best < 0 || !has_picture_size(*format_->streams[best]->codecpar);
    if (timed_out_ || (rtp_over_udp && no_picture && probing * 5 >= options_.timeout * 4)) {
        // The probe gives up quietly when interrupted, with what it has: an RTSP session that
        // accepted PLAY and sent nothing (RTP over UDP blocked by a firewall or NAT) read as
        // connected, and failed only one timeout later.
        throw IngestError(
            IngestError::Kind::stall,
            fmt::format("the session opened, but no video came within {} ms{}", options_.timeout.count(),
                        rtp_over_udp ? " (RTP over UDP blocked on the way? try input.transport: tcp)" : ""),
            FailureCause::no_video);
    }
    const AVCodec* decoder = nullptr;
    stream_index_ = av_find_best_stream(format_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
    if (stream_index_ < 0 || decoder == nullptr) {
        throw IngestError(IngestError::Kind::open,
                          best < 0 ? "no video stream (audio only?)" : "no decodable video stream",
                          FailureCause::no_video);
    }
    for (unsigned i = 0; i < format_->nb_streams; ++i) {
        // Data streams are not read past the demuxer. Audio packets are read and dropped (a few
        // dozen small ones a second): their coming while the video does not tells a camera whose
        // video encoder stopped from a network that did, which a demuxer dropping them (MPEG-TS)
        // hid.
        auto& st = *format_->streams[i];
        if (static_cast<int>(i) != stream_index_)
            st.discard = st.codecpar->codec_type == AVMEDIA_TYPE_AUDIO ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    }
    AVStream* stream = format_->streams[stream_index_];
    // A network format without timestamps (an MJPEG camera's multipart HTTP stream): FFmpeg makes
    // them up at 25 a second whatever the camera sends, and the clips of a 5 fps camera played five
    // times fast. Its packets are stamped by their arrival instead, in milliseconds; the stamps
    // made up are overwritten at each read, before anything sees them.
    arrival_stamps_ = kind_ == SourceKind::network && (format_->iformat->flags & AVFMT_NOTIMESTAMPS) != 0;
    first_arrival_ns_ = -1;
    last_arrival_ms_ = -1;
    if (arrival_stamps_) stream->time_base = AVRational{1, 1000};

    codec_.reset(avcodec_alloc_context3(decoder));
    if (!codec_) throw IngestError(IngestError::Kind::open, "out of memory");
    avcodec_parameters_to_context(codec_.get(), stream->codecpar);
    // One decoder thread per camera: cameras run in parallel, so per-camera CPU stays predictable.
    codec_->thread_count = 1;
    if (options_.keyframes_only) codec_->skip_frame = AVDISCARD_NONKEY;
    err = avcodec_open2(codec_.get(), decoder, nullptr);
    if (err < 0)
        throw IngestError(IngestError::Kind::open,
                          fmt::format("cannot open decoder: {}", av_error_string(err)));

    // H.264's decoder marks each picture it concealed (decode_error_flags); the others are judged
    // from their errors (next_frame()).
    marks_damage_ = codec_->codec_id == AV_CODEC_ID_H264;
    damage_until_key_ = false;
    packet_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    if (!packet_ || !frame_) throw IngestError(IngestError::Kind::open, "out of memory");
    draining_ = false;
    last_picture_ = last_video_packet_ = std::chrono::steady_clock::now();
    // A packet without a duration lasts one frame at the stream's rate.
    const std::int64_t frame_ticks =
        stream->avg_frame_rate.num > 0 ? av_rescale_q(1, av_inv_q(stream->avg_frame_rate), stream->time_base)
                                       : 1;
    // A pause shorter than the timeout is the camera's, not a jump of its clock; a second's margin
    // for the time the stall takes to be seen.
    timeline_.emplace(
        stream->time_base, frame_ticks,
        std::chrono::duration<double>(options_.timeout).count() * (options_.keyframes_only ? 3 : 1) + 1.0);
    // Without a picture size the outputs could make nothing of this connection: they are told of
    // it at its first key frame instead, which carries what the probe did not find.
    announced_ = false;
    key_frames_tried_ = 0;
    key_size_.reset();
    stale_left_ = 0;
    if (observer_ != nullptr && has_picture_size(*stream->codecpar)) {
        observer_->on_stream_opened(*stream);
        announced_ = true;
    }
}

bool FfmpegInput::next_frame() {
    for (;;) {
        int err = avcodec_receive_frame(codec_.get(), frame_.get());
        if (err == 0) {
            last_picture_ = std::chrono::steady_clock::now();
            // Concealed: the decoder filled in what it could not decode (FFmpeg says so only in its
            // log, "error while decoding MB", which the ingest silences).
            if (frame_->decode_error_flags != 0 || (frame_->flags & AV_FRAME_FLAG_CORRUPT) != 0 ||
                (!marks_damage_ && damage_until_key_))
                ++frames_damaged_;
            if (frame_observer_ != nullptr && !before_renewal()) {
                frame_observer_->on_frame(*frame_, format_->streams[stream_index_]->time_base);
            }
            return true;
        }
        if (err == AVERROR_EOF) return false;
        if (err != AVERROR(EAGAIN)) {
            ++decode_errors_;
        }
        if (draining_) return false;

        if (kind_ != SourceKind::file) {
            // With key frames only, a picture comes once a GOP: allow a few GOPs of a slow camera.
            const auto limit = options_.timeout * (options_.keyframes_only ? 3 : 1);
            const auto now = std::chrono::steady_clock::now();
            if (now - last_picture_ > limit) {
                // The limit, not the time it took to notice: the same failure says the same words
                // each time, so a camera failing so for days is summarised in the log. Its audio
                // coming on alone is not its video failing to decode (the ingest review: a camera
                // whose video encoder stopped was said to lack key frames).
                const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
                throw IngestError(
                    IngestError::Kind::stall,
                    now - last_video_packet_ > limit
                        ? fmt::format("no video for {} ms, only the camera's other streams (its audio): its "
                                      "video encoder has stopped?",
                                      ms)
                        : fmt::format("packets but no picture for {} ms (no key frame the decoder "
                                      "can start from?)",
                                      ms),
                    FailureCause::no_video);
            }
        }
        arm_deadline();
        t_last_error.clear();
        err = av_read_frame(format_.get(), packet_.get());
        const auto lost = std::exchange(t_rtp_missed, 0);
        packets_lost_ += lost;
        // Whatever the read returned once the deadline interrupted it: a parser or demuxer hands
        // over what it held (the H.264 parser's pending frame, an MPEG-TS packet), and the next
        // read, with a fresh deadline, waited a whole timeout more (RTSP) or failed on the
        // interrupt's own code, "Immediate exit requested", counted as no stall (HTTP).
        // Over UDP FFmpeg's own timeout can fire a moment before the deadline and flush the
        // parser with a success code: the deadline passed all the same.
        // RTSP over UDP also times out itself (its `timeout`), with ETIMEDOUT: a stall too.
        const bool stalled = interrupted_ || steady_now_ns() > deadline_ns_.load(std::memory_order_relaxed) ||
                             err == AVERROR(ETIMEDOUT);
        if (stalled && !stop_.load()) {
            av_packet_unref(packet_.get());
            throw IngestError(IngestError::Kind::stall,
                              fmt::format("no data for {} ms", options_.timeout.count()));
        }
        if (err == AVERROR_EOF || (err < 0 && kind_ == SourceKind::file && avio_feof(format_->pb))) {
            draining_ = true;
            avcodec_send_packet(codec_.get(), nullptr);  // flush the frames the decoder holds
            continue;
        }
        if (err < 0) {
            if (timed_out_) {
                throw IngestError(IngestError::Kind::stall,
                                  fmt::format("no data for {} ms", options_.timeout.count()));
            }
            if (stop_.load()) throw IngestError(IngestError::Kind::read, "stopped");
            const FailureCause cause = open_failure_cause(err, t_last_error);
            throw IngestError(IngestError::Kind::read,
                              with_reason(fmt::format("read failed: {}", av_error_string(err))),
                              cause == FailureCause::error ? FailureCause::dropped : cause);
        }
        if (packet_->stream_index == stream_index_) {
            last_video_packet_ = std::chrono::steady_clock::now();
            std::optional<Timeline::Shift> shifted;
            if (arrival_stamps_) {
                // Forward only, a tick apart within a burst (a muxer drops a packet not after the
                // one before). Not through the Timeline: a camera without a clock that pauses 12 s
                // made no jump of its clock, and its clip keeps the pause.
                const std::int64_t now = steady_now_ns();
                if (first_arrival_ns_ < 0) first_arrival_ns_ = now;
                const std::int64_t ms = std::max((now - first_arrival_ns_) / 1'000'000, last_arrival_ms_ + 1);
                packet_->pts = packet_->dts = last_arrival_ms_ = ms;
                packet_->duration = 0;  // unknown until the next one comes
            } else {
                shifted = timeline_->place(*packet_);
            }
            if (shifted) {
                if (shifted->kind == Timeline::Shift::Kind::jump) {
                    ++timeline_jumps_;
                    last_jump_seconds_ = shifted->seconds;
                } else {
                    ++timeline_steps_;
                    timeline_steps_seconds_ += shifted->seconds;
                }
            }
            AVStream& stream = *format_->streams[stream_index_];
            const bool key = (packet_->flags & AV_PKT_FLAG_KEY) != 0;
            if (observer_ != nullptr && !announced_ && key) {
                // A key frame may lack the parameter sets (a recovery point, an H.265 CRA, an SPS
                // lost in transit): the next ones are tried. Past a few, the outputs are told all
                // the same and say why they wait.
                constexpr int kKeyFramesTried = 3;
                if (complete_from_key_frame(*stream.codecpar, *packet_) ||
                    ++key_frames_tried_ >= kKeyFramesTried) {
                    observer_->on_stream_opened(stream);
                    announced_ = true;
                }
            }
            if (observer_ != nullptr && announced_ && key) renew_if_changed(stream);
            if (observer_ != nullptr && announced_) observer_->on_packet(*packet_, stream);
            if (!options_.keyframes_only || key) {
                const auto lines = t_error_lines;
                err = avcodec_send_packet(codec_.get(), packet_.get());
                const bool failed = err < 0 && err != AVERROR(EAGAIN);
                if (failed) ++decode_errors_;
                // A decoder that does not mark the pictures it conceals: from an error it met (or a
                // packet lost on the way) every picture is taken as damaged until the next key
                // frame, from which the picture is whole again.
                if (!marks_damage_) {
                    if (failed || t_error_lines != lines || lost > 0)
                        damage_until_key_ = true;
                    else if (key)
                        damage_until_key_ = false;
                }
            }
        }
        av_packet_unref(packet_.get());
    }
}

bool FfmpegInput::before_renewal() {
    if (stale_left_ <= 0) return false;
    // By size, not by time: a camera whose clock starts again at the change has its new key frame
    // placed one frame after the last packet, and the old pictures held came out after it in time.
    if (frame_->width == stale_size_.first && frame_->height == stale_size_.second) {
        --stale_left_;
        return true;
    }
    stale_left_ = 0;  // the new picture's first: nothing after it comes from before
    return false;
}

void FfmpegInput::renew_if_changed(AVStream& stream) {
    // Compared with the size the key frame before gave, not with the stream's: a parser and a
    // decoder that crop differently must not restart the outputs at every key frame.
    const auto size = key_frame_picture_size(*stream.codecpar, *packet_);
    if (!size) return;
    const auto before = std::exchange(key_size_, size);
    if (!before || *before == *size) return;
    // The outputs' headers (MP4's avcC, FLV's sequence header, the HLS init segment) describe one
    // picture: a clip cut after the change kept the old size, and players fed the new pictures
    // under the old header showed garbage or stopped. Told as a new stream, as at a reconnect.
    last_picture_change_ =
        fmt::format("{}x{} to {}x{}", before->first, before->second, size->first, size->second);
    ++picture_changes_;
    renew_from_key_frame(*stream.codecpar, *packet_);
    // The decoder has not seen this key frame yet: its size is the old pictures', and it holds at
    // most its reorder depth of them.
    stale_size_ = {codec_->width, codec_->height};
    stale_left_ = codec_->has_b_frames;
    observer_->on_stream_closed();
    observer_->on_stream_opened(stream);
}

bool FfmpegInput::rewind() {
    if (kind_ != SourceKind::file) return false;
    if (av_seek_frame(format_.get(), stream_index_, 0, AVSEEK_FLAG_BACKWARD) < 0 &&
        avformat_seek_file(format_.get(), -1, INT64_MIN, 0, 0, 0) < 0) {
        return false;
    }
    avcodec_flush_buffers(codec_.get());
    draining_ = false;
    last_picture_ = std::chrono::steady_clock::now();
    timeline_->restart();
    return true;
}

void FfmpegInput::scale_into(cv::Mat& image) {
    std::uint8_t* dst[4] = {image.data, nullptr, nullptr, nullptr};
    const int dst_stride[4] = {static_cast<int>(image.step[0]), 0, 0, 0};
    if (!converter_.convert(*frame_, image.cols, image.rows, AV_PIX_FMT_BGR24, dst, dst_stride))
        throw IngestError(IngestError::Kind::read, "cannot convert this pixel format");
}

double FfmpegInput::frame_time() const {
    // A format without timestamps (an MJPEG camera's multipart HTTP stream) gets them made up at
    // 25 a second, whatever the camera sends: a 5 fps camera was analysed at 0.4 fps, not 2. Its
    // frames are timed by their arrival instead (-1): the analysis reads the wall clock, as for any
    // frame without a time (its packets' stamps, also by arrival, are for the clips).
    // A file keeps the made-up times: they pace it (`realtime`), and it is read no faster.
    if (arrival_stamps_) return -1.0;
    const AVStream* stream = format_->streams[stream_index_];
    const std::int64_t ts = frame_->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) return -1.0;
    return static_cast<double>(ts) * av_q2d(stream->time_base);
}

bool FfmpegInput::frame_is_key() const { return frame_->key_frame != 0; }

double FfmpegInput::display_aspect() const {
    if (!frame_ || frame_->width <= 0 || frame_->height <= 0) return 0.0;
    double aspect = static_cast<double>(frame_->width) / frame_->height;
    const AVRational sar = frame_->sample_aspect_ratio;
    if (sar.num > 0 && sar.den > 0) aspect *= av_q2d(sar);
    return aspect;
}

std::string FfmpegInput::describe() const {
    if (!codec_) return "not open";
    const AVStream* stream = format_->streams[stream_index_];
    const double fps = stream->avg_frame_rate.den != 0 ? av_q2d(stream->avg_frame_rate) : 0.0;
    return fmt::format("{} {}x{} {:.1f}fps", avcodec_get_name(codec_->codec_id), codec_->width,
                       codec_->height, fps);
}

}  // namespace kg::ingest
