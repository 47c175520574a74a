#pragma once
// A live HLS rendition of one camera for the public side: the camera's own H.264/H.265 packets
// segmented by FFmpeg's HLS muxer (no decode, no encode) into fragmented-MP4 segments in a folder
// on tmpfs, a short sliding playlist with old segments deleted. Fed on the ingest thread; a muxer error
// stops the output (its files deleted) and it starts again at a later key frame, backing off from 2 s to
// a minute; never the camera.

#include <spdlog/logger.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ingest/ffmpeg_input.hpp"

namespace kg::stream {

// The names of the files a writer makes, as the web side admits them: its run (6 characters), `g`
// and the connection's generation, then the init segment or a numbered segment. The generation
// counts every reconnect of the camera for the whole run: months of a flapping camera pass a
// million, which the first pattern (6 digits) refused, a dead public stream until a restart.
inline constexpr const char* kHlsFileName = R"([0-9a-z]{6}g[0-9]{1,10}-(init\.mp4|[0-9]{5,10}\.m4s))";

// Removes, from `site_folder` (hls_dir/<site>), the folders of cameras not in `cameras`: a run that
// crashed left its segments there (a writer clears its folder as it closes), and a camera no
// longer public after it kept them on tmpfs, up to the folder limit in memory, until a reboot. Only
// a writer's own files are deleted (the playlist, segments, their .tmp names), and the folder once
// empty; anything else keeps it, as the folder may not be ours. Returns the bytes freed.
std::uintmax_t remove_stale_hls_folders(const std::string& site_folder,
                                        const std::vector<std::string>& cameras, spdlog::logger& log);

class HlsWriter final : public ingest::PacketObserver {
public:
    // `max_gop_bytes`: the most video held in one open segment waiting for a key frame (on tmpfs:
    // memory); past it the stream starts over at the next key frame. `max_folder_bytes`: the most
    // the folder's segments may take, checked at key frames; past it the stream starts over there.
    // The playlist keeps 6 segments (and FFmpeg one more), each at least a GOP long: a camera with
    // long GOPs at a high bitrate, each under the GOP limit, filled the tmpfs with them.
    HlsWriter(std::string folder, int segment_seconds, std::shared_ptr<spdlog::logger> log,
              std::size_t max_gop_bytes = std::size_t{64} << 20,
              std::size_t max_folder_bytes = std::size_t{96} << 20);
    ~HlsWriter() override;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

    const std::string& folder() const { return folder_; }

    // A playlist to serve: FFmpeg writes index.m3u8 when the first segment closes, a GOP or more
    // after the muxer started; a player told "live" before that would get no playlist.
    bool live() const { return listed_.load(); }

private:
    void close();
    void clear_folder();
    std::uintmax_t folder_bytes() const;
    void open_muxer();
    // Gives up the muxer after an error and schedules another, `retry_wait_` on the stream's clock
    // after this packet.
    void fail(const AVPacket& packet, const AVStream& stream, const std::string& what);
    // Why the folder cannot take the muxer's files now (empty if it can).
    std::string unwritable_reason() const;
    // Free bytes on the folder's file system, for this process (nothing if it cannot be read).
    std::optional<std::uintmax_t> free_bytes() const;

    std::string folder_;
    int segment_seconds_;
    std::shared_ptr<spdlog::logger> log_;
    AVFormatContext* out_ = nullptr;
    AVPacket* packet_ = nullptr;
    std::atomic<bool> started_{false};  // false: waiting for the first key frame
    std::atomic<bool> listed_{false};   // the playlist of this muxer is written
    std::int64_t last_dts_ = AV_NOPTS_VALUE;
    // Segment and init file names start with both: they are served with max-age=60, so a name must
    // never come back, across reconnects (generation) nor restarts (run), or a player or a cache
    // could mix a file from before with one after. The run is random, not the start time: a box
    // without a battery-backed clock can start at the same time twice.
    std::string run_;                 // 6 characters [0-9a-z], drawn when the writer is made
    int generation_ = 0;              // bumps on every reconnect
    std::int64_t next_sequence_ = 0;  // the media sequence number the next muxer starts at
    // EXT-X-DISCONTINUITY-SEQUENCE, which FFmpeg 5.1 never writes: each muxer's first segment is a
    // discontinuity, and a playlist that no longer lists one must say so (RFC 8216 6.2.1), or a
    // player numbers the segments after it as if it had not been (Safari's own player, on every
    // parent's iPhone). The number of the first muxer's first segment: from the wall clock, as the
    // media sequence, so that a new run's do not go back.
    std::int64_t first_discontinuity_ = 0;
    // FFmpeg's own file callbacks, called by ours (see open_muxer), and the playlist being written.
    int (*ffmpeg_io_open_)(AVFormatContext*, AVIOContext**, const char*, int, AVDictionary**) = nullptr;
    int (*ffmpeg_io_close2_)(AVFormatContext*, AVIOContext*) = nullptr;
    AVIOContext* playlist_out_ = nullptr;
    static int io_open(AVFormatContext* s, AVIOContext** pb, const char* url, int flags,
                       AVDictionary** options);
    static int io_close2(AVFormatContext* s, AVIOContext* pb);
    // Adds the discontinuity sequence to the playlist FFmpeg has just written under its .tmp name,
    // before it renames it into place.
    void number_discontinuities(const std::string& tmp_playlist);
    bool said_unnumbered_ = false;  // a playlist left without it was said (once a writer)
    // The camera's stream, kept to start the muxer again after a GOP too large to segment.
    std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> codecpar_{nullptr, nullptr};
    AVRational time_base_{1, 90000};
    std::size_t max_gop_bytes_;
    std::size_t gop_bytes_ = 0;  // since the last key frame: what the open segment holds, on tmpfs
    bool warned_gop_ = false;
    std::size_t max_folder_bytes_;
    bool warned_folder_ = false;
    bool starting_over_ = false;  // on_packet is feeding the key frame that started over
    // Failed writes in a row since the stream last played for kSteadySeconds, and when (stream
    // seconds) to try again.
    static constexpr std::int64_t kFirstRetry = 2, kLastRetry = 60;
    std::uint64_t failures_ = 0;
    // Failed headers in a row, across connections, in a folder that took a test write; from
    // kMaxHeaderFailures (about 6 minutes of tries) on, no retries: one header per connection.
    static constexpr int kMaxHeaderFailures = 10;
    int header_failures_ = 0;
    std::int64_t retry_wait_ = 0, retry_at_ = 0;
    // After failures, when (stream seconds) the stream was served again; the failures are forgotten
    // kSteadySeconds later.
    static constexpr std::int64_t kSteadySeconds = 60;
    std::int64_t serving_since_ = 0;
    bool said_serving_ = false;  // "serving again" was logged at info in this run of failures
    std::string unmuxable_;      // why the last connection's stream could not be segmented; empty if it could
};

}  // namespace kg::stream
