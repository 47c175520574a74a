#include "stream/hls_writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <string_view>
#include <system_error>

#include "stream/flv_codecs.hpp"
#include "stream/mp4_tag.hpp"
#include "stream/muxable.hpp"

extern "C" {
#include <libavutil/opt.h>
}

namespace kg::stream {
namespace {

std::string random_run() {
    std::random_device random;
    std::uint64_t value = (std::uint64_t{random()} << 32) | random();
    std::string run(6, '0');
    for (char& c : run) {
        c = "0123456789abcdefghijklmnopqrstuvwxyz"[value % 36];
        value /= 36;
    }
    return run;
}

// The media sequence number after the last segment `playlist` lists; `otherwise` without one.
std::int64_t next_sequence_after(const std::string& playlist, std::int64_t otherwise) {
    std::ifstream in(playlist);
    std::string line;
    std::int64_t first = -1, listed = 0;
    while (std::getline(in, line)) {
        constexpr std::string_view kTag = "#EXT-X-MEDIA-SEQUENCE:";
        if (line.starts_with(kTag)) first = std::strtoll(line.c_str() + kTag.size(), nullptr, 10);
        if (line.starts_with("#EXTINF:")) ++listed;
    }
    // One more than the last listed: the segment the muxer had begun took the next number.
    return first < 0 ? otherwise : std::max(otherwise, first + listed + 1);
}

// The lowest media sequence number a muxer opened now may start at, from the wall clock: a gateway
// that restarts (a reload, an upgrade, a crash) begins a new writer, and a phone player still
// reloading the playlist waits for numbers past the last it played. Half-seconds since 2020: segments
// last a second or more (two short ones at most at a reconnect), so counting up from one start never
// overtakes the next run's; and FFmpeg puts the number in segment names through an int, which this
// fits until 2054. A clock set back (a box without a battery starting in 1970) starts at 0, as every
// start did before.
std::int64_t sequence_floor_now() {
    using namespace std::chrono;
    constexpr std::int64_t k2020 = 1577836800;  // 2020-01-01T00:00:00Z, Unix seconds
    const auto half_seconds =
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count() / 500;
    return std::max<std::int64_t>(0, half_seconds - 2 * k2020);
}

// A packet's time on the stream's clock, in whole seconds (0 without one).
std::int64_t seconds_of(const AVPacket& packet, const AVStream& stream) {
    const auto t = packet.dts != AV_NOPTS_VALUE ? packet.dts : packet.pts;
    return t == AV_NOPTS_VALUE ? 0 : av_rescale_q(t, stream.time_base, AVRational{1, 1});
}

std::string errno_text() { return std::error_code(errno, std::generic_category()).message(); }

}  // namespace

std::uintmax_t remove_stale_hls_folders(const std::string& site_folder,
                                        const std::vector<std::string>& cameras, spdlog::logger& log) {
    static const std::regex own(std::string(kHlsFileName) + R"((\.tmp)?|index\.m3u8(\.tmp){0,2})");
    std::uintmax_t freed = 0;
    std::error_code ec;
    for (const auto& folder : std::filesystem::directory_iterator(site_folder, ec)) {
        const auto name = folder.path().filename().string();
        if (!folder.is_directory(ec) || std::find(cameras.begin(), cameras.end(), name) != cameras.end())
            continue;
        std::uintmax_t bytes = 0;
        bool others = false;
        for (const auto& file : std::filesystem::directory_iterator(folder.path(), ec)) {
            if (!file.is_regular_file(ec) || !std::regex_match(file.path().filename().string(), own)) {
                others = true;
                continue;
            }
            const auto size = file.file_size(ec);
            if (std::filesystem::remove(file.path(), ec) && !ec) bytes += size;
        }
        if (!others) std::filesystem::remove(folder.path(), ec);
        freed += bytes;
        if (bytes > 0 || !others)
            log.info(
                "HLS: what an earlier run left in {} (camera '{}', not public in this configuration) "
                "removed: {} KiB{}",
                folder.path().string(), name, bytes >> 10, others ? "; other files in it kept" : "");
    }
    return freed;
}

HlsWriter::HlsWriter(std::string folder, int segment_seconds, std::shared_ptr<spdlog::logger> log,
                     std::size_t max_gop_bytes, std::size_t max_folder_bytes)
    : folder_(std::move(folder)),
      segment_seconds_(segment_seconds),
      log_(std::move(log)),
      run_(random_run()),
      max_gop_bytes_(max_gop_bytes),
      max_folder_bytes_(max_folder_bytes) {
    first_discontinuity_ = sequence_floor_now();
    std::error_code ec;
    std::filesystem::create_directories(folder_, ec);
    if (ec) log_->error("HLS folder {}: {}", folder_, ec.message());
    // A run that ended without its destructor (a crash, the watchdog's SIGKILL) left its playlist
    // and segments here: served until this camera is back, they were old video shown as live.
    clear_folder();
}

HlsWriter::~HlsWriter() {
    close();
    clear_folder();
}

void HlsWriter::close() {
    if (out_ != nullptr) {
        if (started_) av_write_trailer(out_);
        avformat_free_context(out_);  // the HLS muxer closes its own files
        out_ = nullptr;
        next_sequence_ = next_sequence_after(folder_ + "/index.m3u8", next_sequence_);
    }
    av_packet_free(&packet_);
    started_ = false;
    listed_ = false;
}

void HlsWriter::clear_folder() {
    // Segments of an earlier connection or an earlier public window must not linger: the muxer
    // deletes only what it wrote in this run.
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(folder_, ec)) {
        std::filesystem::remove(entry.path(), ec);
    }
}

void HlsWriter::on_stream_opened(const AVStream& stream) {
    close();
    clear_folder();
    failures_ = 0;
    said_serving_ = false;
    retry_wait_ = 0;  // header_failures_ is not reset here: headers that keep failing in a folder that
                      // takes the test write get one try per connection after the first ten
    codecpar_ = {avcodec_parameters_alloc(), [](AVCodecParameters* p) { avcodec_parameters_free(&p); }};
    if (!codecpar_ || avcodec_parameters_copy(codecpar_.get(), stream.codecpar) < 0) {
        log_->error("HLS: cannot describe the stream");
        codecpar_.reset();
        return;
    }
    time_base_ = stream.time_base;
    std::string why = unmuxable_reason(*codecpar_);
    // An MP4 file holds MJPEG too, but no browser plays it as HLS: the page would try again every few
    // seconds while the status called the camera live.
    const auto codec = codecpar_->codec_id;
    if (why.empty() && codec != AV_CODEC_ID_H264 && codec != AV_CODEC_ID_HEVC) {
        why = fmt::format("the camera sends {} video, which browsers do not play as HLS (give it H.264)",
                          codec_for_people(codec));
    }
    if (!why.empty()) {
        // Said when it changes, not at every reconnect of the same camera.
        if (why != unmuxable_)
            log_->warn("HLS in {}: {}; the public stream waits for the next connection", folder_, why);
        unmuxable_ = why;
        codecpar_.reset();
        return;
    }
    unmuxable_.clear();
    open_muxer();
}

void HlsWriter::open_muxer() {
    ++generation_;
    gop_bytes_ = 0;
    const std::string playlist = folder_ + "/index.m3u8";
    if (avformat_alloc_output_context2(&out_, nullptr, "hls", playlist.c_str()) < 0 || out_ == nullptr) {
        log_->error("HLS: cannot create a muxer for {}", playlist);
        out_ = nullptr;
        return;
    }
    AVStream* s = avformat_new_stream(out_, nullptr);
    if (s == nullptr || avcodec_parameters_copy(s->codecpar, codecpar_.get()) < 0) {
        log_->error("HLS: cannot describe the stream");
        return close();
    }
    // hvc1 for H.265 (the fMP4 muxer's hev1 does not play on iPhones and Safari), else its choice.
    s->codecpar->codec_tag = mp4_codec_tag(*s->codecpar);
    s->time_base = time_base_;
    // A duration option, in microseconds: the integer 2 would be 2 us, a segment at every key frame.
    av_opt_set_int(out_->priv_data, "hls_time", std::int64_t{segment_seconds_} * 1000000, 0);
    av_opt_set_int(out_->priv_data, "hls_list_size", 6, 0);
    // A player reloading the playlist across a reconnect (Safari's and iPhones' own, which the page
    // cannot restart) waits for numbers past the last it played: they keep rising, and the first
    // segment of a new muxer is marked a discontinuity (new timestamps, new init segment).
    // The first muxer of a run is marked too: a player may have played the run before.
    next_sequence_ = std::max(next_sequence_, sequence_floor_now());
    av_opt_set_int(out_->priv_data, "start_number", next_sequence_, 0);
    // temp_file: segments and the playlist are written under .tmp names and renamed when complete,
    // so the web side never reads one half written (FFmpeg truncates and rewrites them in place).
    av_opt_set(out_->priv_data, "hls_flags",
               "delete_segments+independent_segments+omit_endlist+temp_file+discont_start", 0);
    // Fragmented MP4 segments: what browsers' Media Source Extensions take as they are (the page's
    // player) and what Safari and phones play natively; MPEG-TS would need transmuxing in the page.
    av_opt_set(out_->priv_data, "hls_segment_type", "fmp4", 0);
    const std::string stem = fmt::format("{}g{}", run_, generation_);  // e.g. k3f9a2g1
    av_opt_set(out_->priv_data, "hls_fmp4_init_filename", (stem + "-init.mp4").c_str(), 0);
    av_opt_set(out_->priv_data, "hls_segment_filename", fmt::format("{}/{}-%05d.m4s", folder_, stem).c_str(),
               0);
    // The playlist passes through our callbacks on its way to disk (number_discontinuities).
    out_->opaque = this;
    ffmpeg_io_open_ = out_->io_open;
    ffmpeg_io_close2_ = out_->io_close2;
    out_->io_open = &HlsWriter::io_open;
    out_->io_close2 = &HlsWriter::io_close2;
    playlist_out_ = nullptr;
    packet_ = av_packet_alloc();
    if (packet_ == nullptr) {
        log_->error("HLS: out of memory for the muxer's packet");
        return close();
    }
    last_dts_ = AV_NOPTS_VALUE;
}

int HlsWriter::io_open(AVFormatContext* s, AVIOContext** pb, const char* url, int flags,
                       AVDictionary** options) {
    auto& self = *static_cast<HlsWriter*>(s->opaque);
    const int ret = self.ffmpeg_io_open_(s, pb, url, flags, options);
    // temp_file: the playlist is written as index.m3u8.tmp, then renamed.
    if (ret >= 0 && url != nullptr && self.folder_ + "/index.m3u8.tmp" == url) self.playlist_out_ = *pb;
    return ret;
}

int HlsWriter::io_close2(AVFormatContext* s, AVIOContext* pb) {
    auto& self = *static_cast<HlsWriter*>(s->opaque);
    const bool playlist = pb != nullptr && pb == self.playlist_out_;
    const int ret = self.ffmpeg_io_close2_(s, pb);
    if (!playlist) return ret;
    self.playlist_out_ = nullptr;
    if (ret >= 0) self.number_discontinuities(self.folder_ + "/index.m3u8.tmp");
    return ret;
}

void HlsWriter::number_discontinuities(const std::string& tmp_playlist) {
    std::string text;
    {
        std::ifstream in(tmp_playlist, std::ios::binary);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    constexpr std::string_view kMediaSequence = "#EXT-X-MEDIA-SEQUENCE:";
    const auto tag = text.find(kMediaSequence);
    const auto line_end = tag == std::string::npos ? tag : text.find('\n', tag);
    if (line_end == std::string::npos) {
        if (!said_unnumbered_)
            log_->warn(
                "HLS in {}: the playlist FFmpeg wrote has no media sequence; served without a "
                "discontinuity sequence",
                folder_);
        said_unnumbered_ = true;
        return;
    }
    // This muxer's first segment is its one discontinuity; while listed, the discontinuities before
    // it (one a muxer) are gone, and once it is gone too, one more.
    const bool first_listed = text.find("\n#EXT-X-DISCONTINUITY\n") != std::string::npos;
    const std::int64_t sequence = first_discontinuity_ + generation_ - 1 + (first_listed ? 0 : 1);
    text.insert(line_end + 1, fmt::format("#EXT-X-DISCONTINUITY-SEQUENCE:{}\n", sequence));
    // Written aside and renamed over FFmpeg's: a full tmpfs leaves its playlist whole, unnumbered
    // (a player may then number a few segments wrongly), rather than a truncated one.
    const std::string numbered = tmp_playlist + ".tmp";
    {
        std::ofstream out(numbered, std::ios::binary | std::ios::trunc);
        out << text;
        out.close();
        std::error_code ec;
        if (out && (std::filesystem::rename(numbered, tmp_playlist, ec), !ec)) return;
        std::filesystem::remove(numbered, ec);
    }
    if (!said_unnumbered_)
        log_->warn("HLS in {}: cannot number the playlist's discontinuities ({}); served without", folder_,
                   errno_text());
    said_unnumbered_ = true;
}

std::string HlsWriter::unwritable_reason() const {
    // The init segment's own name, so that a probe a crash leaves behind is one of the writer's
    // files (kHlsFileName), cleared like the rest. A few KiB, as the header writes: a full tmpfs
    // takes an empty file but not its bytes.
    const std::string probe = fmt::format("{}/{}g{}-init.mp4.tmp", folder_, run_, generation_);
    const auto open_probe = [&] {
        return ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    };
    int fd = open_probe();
    if (fd < 0 && errno == ENOENT) {
        // The folder went (someone cleared /dev/shm): made again, as at start.
        std::error_code ec;
        std::filesystem::create_directories(folder_, ec);
        if (ec) return fmt::format("cannot make the folder again: {}", ec.message());
        fd = open_probe();
    }
    if (fd < 0) return fmt::format("cannot write in the folder: {}", errno_text());
    static constexpr std::array<char, 4096> kZeros{};
    std::string why;
    errno = 0;  // a short write sets none
    if (::write(fd, kZeros.data(), kZeros.size()) != static_cast<ssize_t>(kZeros.size()))
        why = fmt::format("cannot write in the folder: {}", errno != 0 ? errno_text() : "short write");
    ::close(fd);
    ::unlink(probe.c_str());
    return why;
}

void HlsWriter::fail(const AVPacket& packet, const AVStream& stream, const std::string& what) {
    // Cleared before the trailer too: it writes the open segment and a playlist listing it, which a
    // full file system would truncate. And after it: no frozen playlist left to serve meanwhile.
    clear_folder();
    close();
    clear_folder();
    retry_wait_ = std::clamp(retry_wait_ * 2, kFirstRetry, kLastRetry);
    retry_at_ = seconds_of(packet, stream) + retry_wait_;
    ++failures_;
    log_->log(failures_ == 1 ? spdlog::level::warn : spdlog::level::debug,
              "HLS in {}: {}; the public stream starts again at a key frame in {} s{}", folder_, what,
              retry_wait_, failures_ == 1 ? " (further failures in a row at debug level)" : "");
}

void HlsWriter::on_packet(const AVPacket& packet, const AVStream& stream) {
    if (out_ == nullptr) {
        // After a failed write (a full tmpfs, no descriptor left): tried again on the stream's own
        // clock, backing off, without waiting for the camera's next connection.
        if (failures_ == 0 || codecpar_ == nullptr || !starts_output(packet) ||
            seconds_of(packet, stream) < retry_at_)
            return;
        retry_at_ = seconds_of(packet, stream) + retry_wait_;
        open_muxer();
        if (out_ == nullptr) return;
    }
    if (!started_) {
        // A segment must start on a key frame, or players show garbage until the next one.
        if (!starts_output(packet)) return;
        // FFmpeg 5.1's HLS muxer keeps about 260 KB each time its header fails (AddressSanitizer,
        // bench/soak.py), as it does in a folder it cannot write (gone, read-only, a full tmpfs).
        // Such a folder is found by a write of our own first, which costs nothing to try again:
        // it is tried for as long as it lasts, backing off, and the stream comes back when the
        // folder does, without the camera reconnecting.
        if (const auto why = unwritable_reason(); !why.empty()) return fail(packet, stream, why);
        if (avformat_write_header(out_, nullptr) < 0) {
            // A header that fails in a folder that took the test write: tried for some minutes,
            // not for ever.
            if (++header_failures_ >= kMaxHeaderFailures) {
                close();
                clear_folder();
                failures_ = 0;  // no more tries on this connection
                log_->warn(
                    "HLS in {}: the playlist header failed {} times in a row; the public stream waits "
                    "for the camera's next connection",
                    folder_, header_failures_);
                return;
            }
            return fail(packet, stream, "cannot write the playlist header");
        }
        header_failures_ = 0;
        started_ = true;
    }
    if (!muxable(packet, last_dts_)) return;
    // A segment ends only at a key frame, and the open one grows on tmpfs (memory) until then: a
    // camera that sends key frames rarely, or once, would fill it. Past this the stream starts over
    // at the next key frame.
    const bool key = (packet.flags & AV_PKT_FLAG_KEY) != 0;
    const std::size_t gop_ended = key ? gop_bytes_ : 0;  // the GOP this key frame closes
    gop_bytes_ = key ? 0 : gop_bytes_ + static_cast<std::size_t>(packet.size);
    if (gop_bytes_ > max_gop_bytes_) {
        if (!warned_gop_) {
            log_->warn(
                "HLS in {}: no key frame for {} KiB of video; the public stream waits for the next one (set "
                "the camera's I-frame interval to 1-2 s)",
                folder_, max_gop_bytes_ >> 10);
            warned_gop_ = true;
        }
        close();
        clear_folder();
        return open_muxer();
    }
    if (key && !starting_over_) {
        if (const auto bytes = folder_bytes(); bytes > max_folder_bytes_) {
            if (!warned_folder_) {
                log_->warn(
                    "HLS in {}: the segments take {} MiB, more than {} MiB (long GOPs at a high bitrate: "
                    "give "
                    "the public feed the camera's sub-stream, or an I-frame interval of 1-2 s); the public "
                    "stream starts over at this key frame, and does each time it gets there",
                    folder_, bytes >> 20, max_folder_bytes_ >> 20);
                warned_folder_ = true;
            }
            // Cleared first too: the trailer writes the open segment, which must not land on top.
            clear_folder();
            close();
            clear_folder();
            open_muxer();
            if (out_ == nullptr) return;
            // This key frame starts the new muxer, once: a file that would not go (not ours, not
            // removable) must not make it start over again and again on the same frame.
            starting_over_ = true;
            on_packet(packet, stream);
            starting_over_ = false;
            return;
        }
    }
    // FFmpeg 5.1's HLS muxer does not report a segment it could not write whole (a full tmpfs):
    // the playlist then lists truncated segments that no player can play. Checked where the next
    // segment begins: room for another GOP like the last, or the stream stops and is tried again.
    if (key && gop_ended > 0) {
        if (const auto free = free_bytes(); free && *free < gop_ended) {
            // This camera's own segments said too: a tmpfs too small for the window fills with them.
            return fail(packet, stream,
                        fmt::format("its file system is full ({} KiB free, the last GOP took {} KiB, this "
                                    "camera's segments {} KiB)",
                                    *free >> 10, gop_ended >> 10, folder_bytes() >> 10));
        }
    }
    if (av_packet_ref(packet_, &packet) < 0) return;
    packet_->stream_index = 0;
    av_packet_rescale_ts(packet_, stream.time_base, out_->streams[0]->time_base);
    if (av_write_frame(out_, packet_) < 0) {
        av_packet_unref(packet_);
        return fail(packet, stream, "a write failed");
    }
    av_packet_unref(packet_);
    // A segment closes at a key frame, and the playlist is (re)written then: looked for at key
    // frames only, until it is there.
    if (!listed_ && key) {
        std::error_code ec;
        listed_ = std::filesystem::exists(folder_ + "/index.m3u8", ec);
        if (listed_ && failures_ > 0) {
            // Said once an episode: a tmpfs too small for the window comes back about once a minute.
            log_->log(!said_serving_ ? spdlog::level::info : spdlog::level::debug,
                      "HLS in {}: serving again after {} failed attempts", folder_, failures_);
            said_serving_ = true;
            serving_since_ = seconds_of(packet, stream);
        }
    }
    // The back-off and the quiet log of a failure in a row end once the stream has played for a
    // while, not at its first playlist: a tmpfs too small for the window frees room each time the
    // stream stops, and would otherwise bring it back and fill again every few seconds, warning anew.
    if (failures_ > 0 && listed_ && key && seconds_of(packet, stream) - serving_since_ >= kSteadySeconds) {
        failures_ = 0;
        retry_wait_ = 0;
        said_serving_ = false;
    }
}

std::optional<std::uintmax_t> HlsWriter::free_bytes() const {
    struct statvfs fs {};
    if (::statvfs(folder_.c_str(), &fs) != 0) return std::nullopt;  // the next write says why
    if (fs.f_blocks == 0) return std::nullopt;                      // ramfs and the like: no size
    return std::uintmax_t{fs.f_bavail} * fs.f_frsize;
}

std::uintmax_t HlsWriter::folder_bytes() const {
    std::uintmax_t bytes = 0;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(folder_, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code size_ec;
        const auto size = it->file_size(size_ec);  // a segment FFmpeg deleted meanwhile counts nothing
        if (!size_ec) bytes += size;
    }
    return bytes;
}

void HlsWriter::on_stream_closed() {
    close();
    clear_folder();
}

}  // namespace kg::stream
