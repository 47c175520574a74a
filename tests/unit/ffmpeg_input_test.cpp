// FFmpeg ingest against real inputs: a generated H.264 file and a TCP peer that never answers.
#include "ingest/ffmpeg_input.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "common/logging.hpp"
#include "ingest/camera_worker.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// 10 s of 320x180 H.264 at 25 fps with a key frame every 50 frames, made once per test run.
const std::string& clip() {
    static const std::string path = [] {
        const fs::path p =
            fs::temp_directory_path() / ("kg-ingest-test-" + std::to_string(getpid()) + ".mp4");
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 10 -c:v libx264 "
            "-preset ultrafast -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p " +
            p.string();
        if (std::system(cmd.c_str()) != 0)
            throw std::runtime_error("ffmpeg could not generate " + p.string());
        return p.string();
    }();
    return path;
}

kg::config::Camera file_camera(bool keyframes_only) {
    kg::config::Camera cam;
    cam.id = "file";
    cam.url = clip();
    cam.input.realtime = false;
    cam.input.loop = false;
    cam.analysis.fps = 2;
    cam.analysis.width = 160;
    cam.analysis.height = 90;
    cam.analysis.keyframes_only = keyframes_only;
    return cam;
}

// Runs a worker over the whole file and returns how many frames it handed on.
int frames_from_file(bool keyframes_only, kg::ingest::CameraStats& stats) {
    kg::ingest::LatestFrame slot;
    std::atomic<int> frames{0};
    kg::ingest::LoginGate logins;
    kg::ingest::CameraWorker worker(
        file_camera(keyframes_only), slot, stats, logins,
        [&] {
            const auto* f = slot.take();
            if (f != nullptr) {
                EXPECT_EQ(f->image.cols, 160);
                EXPECT_EQ(f->image.rows, 90);
                ++frames;
            }
        },
        kg::Logging::null_logger());
    worker.start();
    for (int i = 0; i < 200 && stats.snapshot(std::chrono::steady_clock::now()).last_error != "end of file";
         ++i) {
        std::this_thread::sleep_for(50ms);
    }
    worker.stop();
    return frames.load();
}

}  // namespace

TEST(FfmpegInput, DecodesAFileSampledToTheAnalysisRate) {
    kg::ingest::CameraStats stats;
    EXPECT_EQ(frames_from_file(false, stats), 20);  // 10 s at 2 fps
    const auto s = stats.snapshot(std::chrono::steady_clock::now());
    EXPECT_EQ(s.frames_in, 250u);
    EXPECT_EQ(s.decode_errors, 0u);
}

TEST(FfmpegInput, KeyframesOnlyDecodesOnlyKeyFrames) {
    kg::ingest::CameraStats stats;
    EXPECT_EQ(frames_from_file(true, stats), 5);  // one key frame every 2 s
    EXPECT_EQ(stats.snapshot(std::chrono::steady_clock::now()).frames_in, 5u);
}

TEST(FfmpegInput, AFileThatDoesNotExistFailsToOpenWithTheReason) {
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({"/nonexistent/cam.mp4"}, stop);
    try {
        input.open();
        FAIL() << "opened a missing file";
    } catch (const kg::ingest::IngestError& e) {
        EXPECT_EQ(e.kind, kg::ingest::IngestError::Kind::open);
        EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
    }
}

TEST(FfmpegInput, AServerThatNeverAnswersIsAStallWithinTheTimeout) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 4), 0);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    const int port = ntohs(addr.sin_port);

    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input(
        {"rtsp://127.0.0.1:" + std::to_string(port) + "/cam", kg::config::Transport::tcp, 1500ms}, stop);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        input.open();
        FAIL() << "opened a server that never answers";
    } catch (const kg::ingest::IngestError& e) {
        EXPECT_EQ(e.kind, kg::ingest::IngestError::Kind::stall) << e.what();
    }
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 1400ms);
    EXPECT_LT(took, 5s);
    close(listener);
}

TEST(FfmpegInput, StopAbortsABlockedOpenAtOnce) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listener, 4);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);

    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({"rtsp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/cam",
                                   kg::config::Transport::tcp, 60s},
                                  stop);
    std::thread stopper([&] {
        std::this_thread::sleep_for(300ms);
        stop = true;
    });
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(input.open(), kg::ingest::IngestError);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    stopper.join();
    close(listener);
}

namespace {

// Records the decoding times the outputs (HLS, FLV, RTMP, clips) would be handed.
struct DtsRecorder final : kg::ingest::PacketObserver {
    std::vector<std::int64_t> dts;
    std::int64_t frame_ticks = 0;
    void on_stream_opened(const AVStream& s) override {
        frame_ticks = av_rescale_q(1, av_inv_q(s.avg_frame_rate), s.time_base);
    }
    void on_packet(const AVPacket& p, const AVStream&) override { dts.push_back(p.dts); }
    void on_stream_closed() override {}
};

}  // namespace

TEST(FfmpegInput, ALoopedFileIsOneContinuousTimeline) {
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip()}, stop);
    DtsRecorder recorder;
    input.set_packet_observer(&recorder);
    input.open();
    std::vector<double> frame_times;
    for (int pass = 0; pass < 3; ++pass) {
        while (input.next_frame()) frame_times.push_back(input.frame_time());
        if (pass < 2) {
            ASSERT_TRUE(input.rewind());
        }
    }
    ASSERT_EQ(recorder.dts.size(), 750u);  // three passes of 250 packets
    // Strictly increasing across both rewinds (muxers drop any packet that is not), and with no gap:
    // each pass starts one frame after the previous one ended.
    for (std::size_t i = 1; i < recorder.dts.size(); ++i)
        ASSERT_EQ(recorder.dts[i] - recorder.dts[i - 1], recorder.frame_ticks) << "packet " << i;
    ASSERT_EQ(frame_times.size(), 750u);
    EXPECT_NEAR(frame_times[250] - frame_times[249], 0.04, 1e-6);  // the pacing sees 25 fps throughout
    EXPECT_NEAR(frame_times.back() - frame_times.front(), 30.0 - 0.04, 1e-6);
}

// A camera whose clock jumps without a reconnect: an MPEG-TS stream of two parts concatenated byte
// for byte, the first stamped from 30 s, the second from 0 again (as when a camera resets its clock
// or an NVR restarts a stream). Every output is handed one continuous timeline, and the jump is
// counted with its size. Before, the packets after the jump went on 36 s back in time: every muxer
// dropped them all.
TEST(FfmpegInput, ACameraClockThatJumpsBackIsOneContinuousTimeline) {
    const fs::path dir = fs::temp_directory_path() / ("kg-jump-" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::string joined = "cat";
    for (const auto& [seconds, offset] : {std::pair{6, 30}, std::pair{4, 0}}) {
        const fs::path part = dir / ("part" + std::to_string(offset) + ".ts");
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x90:rate=25:duration=" +
            std::to_string(seconds) +
            " -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -output_ts_offset " +
            std::to_string(offset) + " -f mpegts " + part.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0);
        joined += " " + part.string();
    }
    const fs::path clip = dir / "jump.ts";
    ASSERT_EQ(std::system((joined + " > " + clip.string()).c_str()), 0);

    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip.string()}, stop);
    DtsRecorder recorder;
    input.set_packet_observer(&recorder);
    input.open();
    std::vector<double> frame_times;
    while (input.next_frame()) frame_times.push_back(input.frame_time());
    ASSERT_EQ(recorder.dts.size(), 250u);
    for (std::size_t i = 1; i < recorder.dts.size(); ++i)
        ASSERT_EQ(recorder.dts[i] - recorder.dts[i - 1], recorder.frame_ticks) << "packet " << i;
    EXPECT_EQ(input.timeline_jumps(), 1u);
    EXPECT_NEAR(input.last_jump_seconds(), -36.0, 0.05);  // from 36 s (30 + 6) back to 0
    ASSERT_EQ(frame_times.size(), 250u);
    EXPECT_NEAR(frame_times[150] - frame_times[149], 0.04, 1e-6);  // the pacing sees no jump either
    fs::remove_all(dir);
}

// A camera that stamps five frames like the one before them (a relay, a careless clock), then whose
// clock an NTP client steps back by 0.5 s. The repeats are moved a tick each, neither counted nor
// logged (cameras do it all day); the step is counted and logged once, at info, with its size. No
// frame is lost to either.
TEST(CameraWorker, AStepBackIsCountedAndLoggedAndRepeatedTimesAreNot) {
    const fs::path dir = fs::temp_directory_path() / ("kg-steps-" + std::to_string(getpid()));
    fs::create_directories(dir);
    // (frames, first time in s): 2 s from 30 s; five single frames all at 31.96 s, the time of the
    // frame before them; 2 s more from 32 s; 2 s from 33.5 s, where 34 s was due.
    const std::vector<std::pair<int, double>> parts{{50, 30.0}, {1, 31.96}, {1, 31.96}, {1, 31.96},
                                                    {1, 31.96}, {1, 31.96}, {50, 32.0}, {50, 33.5}};
    std::string joined = "cat";
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const fs::path part = dir / ("part" + std::to_string(i) + ".ts");
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x90:rate=25 -frames:v " +
            std::to_string(parts[i].first) +
            " -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -output_ts_offset " +
            std::to_string(parts[i].second) + " -f mpegts " + part.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0);
        joined += " " + part.string();
    }
    kg::config::Camera cam = file_camera(false);
    cam.url = (dir / "steps.ts").string();
    ASSERT_EQ(std::system((joined + " > " + cam.url).c_str()), 0);

    std::ostringstream lines;
    auto log = std::make_shared<spdlog::logger>("cam:steps",
                                                std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    log->set_pattern("%l %v");
    kg::ingest::CameraStats stats;
    kg::ingest::LatestFrame slot;
    kg::ingest::LoginGate logins;
    kg::ingest::CameraWorker worker(
        cam, slot, stats, logins, [&] { slot.take(); }, log);
    worker.start();
    for (int i = 0; i < 200 && stats.snapshot(std::chrono::steady_clock::now()).last_error != "end of file";
         ++i) {
        std::this_thread::sleep_for(50ms);
    }
    worker.stop();
    const auto s = stats.snapshot(std::chrono::steady_clock::now());
    EXPECT_EQ(s.frames_in, 155u);
    // The five frames stamped like the one before them are moved a tick each, not counted: cameras
    // with a careless clock do it all day. The 0.5 s step is one.
    EXPECT_EQ(s.timestamp_jumps, 1u);
    std::vector<std::string> stepped;
    std::istringstream in(lines.str());
    for (std::string line; std::getline(in, line);) {
        if (line.find("stepped back") != std::string::npos) stepped.push_back(line);
    }
    ASSERT_EQ(stepped.size(), 1u) << lines.str();
    EXPECT_EQ(stepped[0].rfind("info timestamps stepped back by 0.500 s", 0), 0u) << stepped[0];
    EXPECT_EQ(stepped[0].find(" steps"), std::string::npos) << stepped[0];
    EXPECT_EQ(lines.str().find("jumped"), std::string::npos) << lines.str();
    fs::remove_all(dir);
}

// A file removed when the test ends, however it ends.
struct TempFile {
    fs::path path;
    explicit TempFile(const std::string& name)
        : path(fs::temp_directory_path() / ("kg-" + std::to_string(getpid()) + "-" + name)) {}
    ~TempFile() {
        std::error_code ec;
        fs::remove(path, ec);
    }
};

// Cameras tag their streams with the matrix their pixels were encoded with (BT.709 for HD, BT.601
// for SD) and with their range (limited, or full on many IP cameras). Read with the wrong matrix,
// an HD camera's red cap and skin shift by up to 22 levels a channel: what the checks see must be
// the colours FFmpeg's own conversion gives, on every frame (a full-range picture's conversion
// was set up again on each frame, and fell back to BT.601 on some), and after a size change.
TEST(FfmpegInput, ColoursAreReadWithTheMatrixAndRangeTheStreamIsTaggedWith) {
    struct Encoding {
        const char *name, *matrix, *range, *pix_fmt, *codec, *colour = "0xC82828";
        cv::Vec3b want{40, 40, 200};  // BGR of `colour`
    };
    const Encoding encodings[] = {
        {"h264-bt709-limited", "bt709", "tv", "yuv420p", "libx264"},
        {"h264-bt601-limited", "smpte170m", "tv", "yuv420p", "libx264"},
        {"h264-bt709-full", "bt709", "pc", "yuvj420p", "libx264"},
        {"hevc-bt709-full", "bt709", "pc", "yuv420p", "libx265 -x265-params log-level=error"},
        {"hevc10-bt709-full", "bt709", "pc", "yuv420p10le", "libx265 -x265-params log-level=error"},
        {"h264-bt2020-limited", "bt2020nc", "tv", "yuv420p", "libx264"},
        // A monochrome camera (4:0:0), limited range: 153 is 153 read, not 159 nor 147.
        {"hevc-grey-limited",
         "bt709",
         "tv",
         "gray",
         "libx265 -x265-params log-level=error",
         "0x999999",
         {153, 153, 153}},
    };
    for (const auto& e : encodings) {
        SCOPED_TRACE(e.name);
        const TempFile clip(std::string("colour-") + e.name + ".mp4");
        const std::string cmd = std::string("ffmpeg -loglevel error -y -f lavfi -i color=c=") + e.colour +
                                ":s=1280x720:d=0.4:r=25 -vf format=rgb24,scale=out_color_matrix=" + e.matrix +
                                ":out_range=" + e.range + ",format=" + e.pix_fmt + " -colorspace " +
                                e.matrix + " -color_range " + e.range + " -c:v " + e.codec + " -qp 4 " +
                                clip.path.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        std::atomic<bool> stop{false};
        kg::ingest::FfmpegInput input({clip.path.string()}, stop);
        input.open();
        // Every frame, into three sizes in turn (the camera's own too: swscale converts it by
        // other paths): each conversion keeps the stream's matrix and range.
        cv::Mat sizes[3] = {cv::Mat(36, 64, CV_8UC3), cv::Mat(720, 1280, CV_8UC3), cv::Mat(90, 160, CV_8UC3)};
        int frames = 0;
        for (; frames < 10 && input.next_frame(); ++frames) {
            cv::Mat& image = sizes[(frames / 2) % 3];
            input.scale_into(image);
            const auto got = image.at<cv::Vec3b>(image.rows / 2, image.cols / 2);
            for (int c = 0; c < 3; ++c)
                EXPECT_NEAR(got[c], e.want[c], 5) << "channel " << c << " (BGR) of frame " << frames << " at "
                                                  << image.cols << "x" << image.rows;
        }
        EXPECT_EQ(frames, 10);
    }
}

namespace {

// A loopback TCP server on its own thread: `serve` gets each accepted connection. Closed (and
// joined) at the end of the test.
class LoopbackServer {
public:
    // `port` 0: any free one.
    explicit LoopbackServer(std::function<void(int)> serve, std::uint16_t port = 0)
        : serve_(std::move(serve)) {
        listener_ = socket(AF_INET, SOCK_STREAM, 0);
        const int yes = 1;
        setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        listen(listener_, 4);
        socklen_t len = sizeof addr;
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] {
            for (;;) {
                const int c = accept(listener_, nullptr, nullptr);
                if (c < 0) return;
                connections_.push_back(c);
                serve_(c);
            }
        });
    }
    ~LoopbackServer() {
        shutdown(listener_, SHUT_RDWR);
        close(listener_);
        thread_.join();
        for (int c : connections_) close(c);
    }
    int port() const { return port_; }

private:
    std::function<void(int)> serve_;
    int listener_ = -1, port_ = 0;
    std::vector<int> connections_;
    std::thread thread_;
};

// What an RTSP client asked, a request at a time: (method, CSeq); empty at the end of the stream.
std::pair<std::string, std::string> rtsp_request(int fd, std::string* whole = nullptr) {
    std::string head;
    char c = 0;
    while (head.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1) head += c;
    if (whole != nullptr) *whole = head;
    if (head.empty()) return {};
    const auto cseq_at = head.find("CSeq:");
    const auto cseq_end = head.find("\r\n", cseq_at);
    return {head.substr(0, head.find(' ')),
            cseq_at == std::string::npos ? "0" : head.substr(cseq_at + 5, cseq_end - cseq_at - 5)};
}

void send_text(int fd, const std::string& text) { (void)send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

// The bytes of `seconds` of generated video, encoded by ffmpeg with `encode` (codec and container
// options), kept in a temporary file only while it is made.
std::string generated(const std::string& name, int rate, int seconds, const std::string& encode) {
    const fs::path file = fs::temp_directory_path() / ("kg-" + name + "-" + std::to_string(getpid()));
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x90:rate=" + std::to_string(rate) + " -t " +
        std::to_string(seconds) + " " + encode + " " + file.string();
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("ffmpeg could not generate " + file.string());
    std::ifstream in(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::remove(file);
    return data;
}

const char* const kTs = "-c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -f mpegts";

// Answers each HTTP request with `body` after a 200 header of `type`; `close`: then closes the
// sending side, else keeps the connection open and silent.
std::function<void(int)> http_answer(const std::string& type, const std::string& body, bool close) {
    return [type, body, close](int fd) {
        char request[4096];
        (void)recv(fd, request, sizeof request, 0);
        send_text(fd, "HTTP/1.0 200 OK\r\nContent-Type: " + type + "\r\n\r\n" + body);
        if (close) shutdown(fd, SHUT_WR);
    };
}

}  // namespace

// An RTSP session that accepts PLAY and then sends nothing (RTP blocked by a firewall or a NAT)
// read as connected: the probe gave up quietly, and the stall came a whole timeout later (review).
// Over UDP FFmpeg's own wait ended the probe a moment before the deadline, with success and a
// picture of 0x0: "connected", and the hint to try TCP never said (the ingest review).
TEST(FfmpegInput, ASessionThatOpensButSendsNoVideoIsAStallAtTheOpen) {
    for (const auto transport : {kg::config::Transport::tcp, kg::config::Transport::udp}) {
        const bool udp = transport == kg::config::Transport::udp;
        LoopbackServer server([udp](int fd) {
            const std::string sdp =
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 0 RTP/AVP "
                "96\r\n"
                "a=rtpmap:96 H264/90000\r\na=control:track1\r\n";
            std::string request;
            for (auto [method, cseq] = rtsp_request(fd, &request); !method.empty();
                 std::tie(method, cseq) = rtsp_request(fd, &request)) {
                std::string extra;
                if (method == "DESCRIBE")
                    extra = "Content-Type: application/sdp\r\nContent-Length: " + std::to_string(sdp.size()) +
                            "\r\n";
                if (method == "SETUP" && !udp)
                    extra = "Session: 1234\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n";
                if (method == "SETUP" && udp) {
                    // The ports the client asked for, and ports of ours nothing is ever sent from.
                    const auto at = request.find("client_port=");
                    const auto ports =
                        request.substr(at + 12, request.find_first_of(";\r", at + 12) - at - 12);
                    extra = "Session: 1234\r\nTransport: RTP/AVP;unicast;client_port=" + ports +
                            ";server_port=50000-50001\r\n";
                }
                if (method == "PLAY") extra = "Session: 1234\r\n";
                send_text(fd, "RTSP/1.0 200 OK\r\nCSeq:" + cseq + "\r\n" + extra + "\r\n" +
                                  (method == "DESCRIBE" ? sdp : std::string()));
            }
        });
        std::atomic<bool> stop{false};
        kg::ingest::FfmpegInput input(
            {"rtsp://127.0.0.1:" + std::to_string(server.port()) + "/cam", transport, 1500ms}, stop);
        try {
            input.open();
            ADD_FAILURE() << (udp ? "udp" : "tcp") << ": opened: " << input.describe();
        } catch (const kg::ingest::IngestError& e) {
            EXPECT_EQ(e.kind, kg::ingest::IngestError::Kind::stall) << e.what();
            EXPECT_NE(std::string(e.what()).find("no video came"), std::string::npos) << e.what();
            EXPECT_EQ(std::string(e.what()).find("try input.transport: tcp") != std::string::npos, udp)
                << e.what();
        }
    }
}

// An HTTP MPEG-TS camera that stops sending and keeps the connection open: the interrupted read
// handed over a last packet, and the next failed with the interrupt's own "Immediate exit
// requested", a read error, not a stall (review).
TEST(FfmpegInput, AnHttpStreamThatStopsSendingIsAStall) {
    LoopbackServer server(http_answer("video/mp2t", generated("stall", 25, 2, kTs), false));  // then silent
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input(
        {"http://127.0.0.1:" + std::to_string(server.port()) + "/cam.ts", kg::config::Transport::tcp, 1500ms},
        stop);
    input.open();
    try {
        while (input.next_frame()) {
        }
        FAIL() << "the stream ended";
    } catch (const kg::ingest::IngestError& e) {
        EXPECT_EQ(e.kind, kg::ingest::IngestError::Kind::stall) << e.what();
        EXPECT_EQ(std::string(e.what()), "no data for 1500 ms");
    }
}

// A multipart MJPEG stream (an IP camera's /video.mjpg) has no timestamps: FFmpeg made them up at
// 25 a second, so a 5 fps camera was sampled at a fifth of analysis.fps (review). Its pictures are
// timed by their arrival.
TEST(FfmpegInput, AStreamWithoutTimestampsIsTimedByArrival) {
    const std::string mjpeg = generated("mjpeg", 5, 2, "-c:v mjpeg -f mpjpeg");
    LoopbackServer server(http_answer("multipart/x-mixed-replace;boundary=ffmpeg", mjpeg, false));
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput camera({"http://127.0.0.1:" + std::to_string(server.port()) + "/video.mjpg",
                                    kg::config::Transport::tcp, 3000ms},
                                   stop);
    camera.open();
    ASSERT_TRUE(camera.next_frame());
    EXPECT_EQ(camera.frame_time(), -1.0);
    // A file keeps the made-up times: they pace it (`realtime`).
    const fs::path mjpg = fs::temp_directory_path() / ("kg-mjpeg-" + std::to_string(getpid()) + ".mjpg");
    std::ofstream(mjpg, std::ios::binary) << mjpeg;
    kg::ingest::FfmpegInput file({mjpg.string()}, stop);
    file.open();
    ASSERT_TRUE(file.next_frame());
    EXPECT_GE(file.frame_time(), 0.0);
    fs::remove(mjpg);
}

// ... and so are its packets, which the clips are cut from: with the stamps FFmpeg made up, at 25 a
// second, a 5 fps camera's clip played five times fast (review). Here the camera sends its
// pictures at 5 a second, as a camera does.
TEST(FfmpegInput, AStreamWithoutTimestampsGetsPacketsStampedByArrival) {
    const std::string mjpeg = generated("mjpeg-paced", 5, 2, "-c:v mjpeg -f mpjpeg");
    const std::string boundary = "--ffmpeg\r\n";
    std::vector<std::string> pictures;
    for (std::size_t at = mjpeg.find(boundary); at != std::string::npos;) {
        const std::size_t next = mjpeg.find(boundary, at + boundary.size());
        pictures.push_back(mjpeg.substr(at, next == std::string::npos ? std::string::npos : next - at));
        at = next;
    }
    ASSERT_GE(pictures.size(), 10u);
    LoopbackServer server([&pictures](int fd) {
        char request[4096];
        (void)recv(fd, request, sizeof request, 0);
        send_text(fd, "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=ffmpeg\r\n\r\n");
        for (std::size_t i = 0; i < pictures.size(); ++i) {
            send_text(fd, pictures[i]);
            // Halfway, a pause longer than any clock jump (10 s): the camera's, not a clock's.
            std::this_thread::sleep_for(i == pictures.size() / 2 ? 10500ms : 200ms);
        }
        shutdown(fd, SHUT_WR);
    });
    struct Stamps final : kg::ingest::PacketObserver {
        AVRational time_base{0, 1};
        std::vector<std::int64_t> pts;
        void on_stream_opened(const AVStream& s) override { time_base = s.time_base; }
        void on_packet(const AVPacket& p, const AVStream&) override { pts.push_back(p.pts); }
        void on_stream_closed() override {}
    } stamps;
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput camera({"http://127.0.0.1:" + std::to_string(server.port()) + "/video.mjpg",
                                    kg::config::Transport::tcp, 15000ms},
                                   stop);
    camera.set_packet_observer(&stamps);
    camera.open();
    try {
        while (camera.next_frame()) {
        }
    } catch (const kg::ingest::IngestError&) {  // the camera hung up: as a network source does
    }
    ASSERT_GE(stamps.pts.size(), 8u);
    ASSERT_GT(stamps.time_base.num, 0);
    for (std::size_t i = 1; i < stamps.pts.size(); ++i) ASSERT_GT(stamps.pts[i], stamps.pts[i - 1]) << i;
    // n pictures 200 ms apart, with one pause of 10.5 s, span (n - 2) x 0.2 + 10.5 s; made up at 25
    // a second, (n - 1) x 0.04 s; a pause taken for a clock's jump would be cut to a frame.
    const double span =
        static_cast<double>(stamps.pts.back() - stamps.pts.front()) * av_q2d(stamps.time_base);
    const double sent = 0.2 * static_cast<double>(stamps.pts.size() - 2) + 10.5;
    EXPECT_GT(span, sent - 0.6) << span;
    EXPECT_LT(span, sent + 1.0) << span;
    EXPECT_EQ(camera.timeline_jumps(), 0u);
}

// A camera given as an HLS URL whose encoder stopped: the web server still serves its playlist,
// finished (#EXT-X-ENDLIST), and FFmpeg plays a finished playlist from its first segment. Its past
// seconds were analysed as the kitchen now, at each reconnect, and the camera read as back for as
// long as they lasted, then offline again: an offline alert raised and ended over and over
// (review). A finished playlist is refused, with the reason; a live one is read.
TEST(FfmpegInput, AFinishedHlsPlaylistIsRefusedAndALiveOneIsRead) {
    const std::string segment = generated("hls-segment", 25, 1, kTs);
    const std::string playlist =
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:1.0,\nseg0.ts\n#EXTINF:1.0,\nseg1.ts\n";
    std::atomic<int> segments_asked{0};
    LoopbackServer server([&](int fd) {
        std::string head;
        char c = 0;
        while (head.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1) head += c;
        const auto path =
            head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1);
        std::string type = "application/vnd.apple.mpegurl", body;
        if (path == "/live.m3u8") {
            body = playlist;
        } else if (path == "/ended.m3u8") {
            body = playlist + "#EXT-X-ENDLIST\n";
        } else {
            ++segments_asked;
            type = "video/mp2t";
            body = segment;
        }
        send_text(fd, "HTTP/1.0 200 OK\r\nContent-Type: " + type + "\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
        shutdown(fd, SHUT_WR);
    });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
    std::atomic<bool> stop{false};
    {
        kg::ingest::FfmpegInput input({base + "/ended.m3u8", kg::config::Transport::tcp, 3000ms}, stop);
        try {
            input.open();
            ADD_FAILURE() << "a finished playlist was opened: " << input.describe();
        } catch (const kg::ingest::IngestError& e) {
            EXPECT_EQ(e.kind, kg::ingest::IngestError::Kind::open);
            EXPECT_NE(
                std::string(e.what()).find("the HLS playlist has ended (#EXT-X-ENDLIST, 2 s of past video)"),
                std::string::npos)
                << e.what();
        }
    }
    EXPECT_GE(segments_asked.load(), 1) << "refused for another reason: the playlist was not read through";
    kg::ingest::FfmpegInput input({base + "/live.m3u8", kg::config::Transport::tcp, 3000ms}, stop);
    input.open();
    EXPECT_TRUE(input.next_frame());
    EXPECT_EQ(input.describe().rfind("h264 160x90", 0), 0u) << input.describe();
}

// "cannot open: Input/output error" was all a camera whose host name does not resolve said: the
// reason went to FFmpeg's log, which the gateway silences (review).
TEST(FfmpegInput, AnOpenThatFailsSaysFfmpegsReason) {
    kg::ingest::initialise_ffmpeg();  // as the gateway does at its start: it keeps FFmpeg's reasons
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({"rtsp://admin:secret@nonexistent-cam.invalid/stream"}, stop);
    try {
        input.open();
        FAIL() << "opened a host that does not exist";
    } catch (const kg::ingest::IngestError& e) {
        EXPECT_NE(std::string(e.what()).find("resolve"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("secret"), std::string::npos) << e.what();
    }
}

// A worker over `cam` that counts the pictures it hands on.
struct CountingWorker {
    kg::ingest::CameraStats stats;
    kg::ingest::LatestFrame slot;
    std::atomic<int> frames{0};
    kg::ingest::LoginGate logins;
    kg::ingest::CameraWorker worker;
    CountingWorker(const kg::config::Camera& cam, std::shared_ptr<spdlog::logger> log)
        : worker(
              cam, slot, stats, logins,
              [this] {
                  if (slot.take() != nullptr) ++frames;
              },
              std::move(log)) {}
    std::tuple<kg::ingest::CameraStats&, std::atomic<int>&, kg::ingest::CameraWorker&> parts() {
        return {stats, frames, worker};
    }
};

// A camera unreachable for a week, tried every 30 s, wrote two lines a try: 240 an hour, hiding the
// rest of the journal. The first tries are said, then a summary every 10 minutes; its pictures
// coming back are said too.
TEST(CameraWorker, AnUnreachableCameraIsSaidAFewTimesThenSummarisedAndItsReturnSaid) {
    std::uint16_t port = 0;
    {
        port = LoopbackServer([](int) {}).port();
    }  // a port nobody listens on now
    kg::config::Camera cam = file_camera(false);
    cam.url = "http://127.0.0.1:" + std::to_string(port) + "/cam.ts";
    cam.input.reconnect_min = cam.input.reconnect_max = 20ms;
    std::ostringstream lines;
    auto log =
        std::make_shared<spdlog::logger>("cam:gone", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    log->set_pattern("%l %v");
    CountingWorker counting(cam, log);
    auto [stats, frames, worker] = counting.parts();
    worker.start();
    for (int i = 0; i < 200 && stats.snapshot(std::chrono::steady_clock::now()).reconnects_1h < 12; ++i)
        std::this_thread::sleep_for(50ms);
    ASSERT_GE(stats.snapshot(std::chrono::steady_clock::now()).reconnects_1h, 12);
    const auto count = [&](const std::string& what) {
        const std::string text = lines.str();
        std::size_t n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("warning http://127.0.0.1"), 3u) << lines.str();
    EXPECT_EQ(count("reconnecting in"), 3u) << lines.str();
    EXPECT_EQ(count("3 tries in a row: from now on said once every 10 min while it fails so"), 1u)
        << lines.str();
    // It comes back.
    LoopbackServer server(http_answer("video/mp2t", generated("back", 25, 4, kTs), false), port);
    ASSERT_EQ(server.port(), port);
    for (int i = 0; i < 200 && frames.load() == 0; ++i) std::this_thread::sleep_for(50ms);
    worker.stop();
    EXPECT_GT(frames.load(), 0);
    EXPECT_EQ(count("info http://127.0.0.1:" + std::to_string(port) + "/cam.ts: pictures again after "), 1u)
        << lines.str();
}

// An HTTP URL to a recording comes as fast as it downloads, and
// sampled by its own time a camera set to 2 pictures a second was analysed at 40, a core taken
// from every other camera (review). A network source's pictures are sampled at most twice the
// rate by the wall clock too (not paced: waiting in the read loop delayed live cameras).
// A 4:3 D1 camera (704x576, sample aspect 12:11) at the default 640x360 had every picture and
// snapshot stretched, unsaid (the 54th session's review): it is said once, with the height that keeps
// the shape. A camera of the analysis size's shape is not.
TEST(CameraWorker, PicturesStretchedToTheAnalysisSizeAreSaidOnce) {
    EXPECT_EQ(kg::ingest::stretch_warning(16.0 / 9, 640, 360), std::nullopt);
    EXPECT_EQ(kg::ingest::stretch_warning(1920.0 / 1088, 640, 360), std::nullopt) << "within 5 %";
    EXPECT_EQ(kg::ingest::stretch_warning(0, 640, 360), std::nullopt) << "no picture yet";
    EXPECT_EQ(kg::ingest::stretch_warning(4.0 / 3, 640, 360),
              "its pictures (1.33:1) are analysed at 640x360 (1.78:1): stretched, in the checks' eyes and in "
              "snapshots; set analysis.height: 480 to keep their shape");

    const fs::path file = fs::temp_directory_path() / ("kg-d1-" + std::to_string(getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=704x576:rate=25 -t 2 "
        "-vf setsar=12/11 -c:v libx264 -preset ultrafast -pix_fmt yuv420p " +
        file.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    for (const auto& [url, width, height] : std::vector<std::tuple<std::string, int, int>>{
             {file.string(), 640, 360}, {file.string(), 640, 480}, {clip(), 640, 360}}) {
        kg::config::Camera cam = file_camera(false);
        cam.url = url;
        cam.analysis.width = width;
        cam.analysis.height = height;
        std::ostringstream lines;
        auto log =
            std::make_shared<spdlog::logger>("cam", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
        kg::ingest::CameraStats stats;
        kg::ingest::LatestFrame slot;
        kg::ingest::LoginGate logins;
        kg::ingest::CameraWorker worker(
            cam, slot, stats, logins, [&] { slot.take(); }, log);
        worker.start();
        for (int i = 0;
             i < 500 && stats.snapshot(std::chrono::steady_clock::now()).last_error != "end of file"; ++i)
            std::this_thread::sleep_for(10ms);
        worker.stop();
        const auto said = lines.str();
        const bool stretched = url == file.string() && height == 360;
        EXPECT_EQ(said.find("set analysis.height: 480 to keep their shape") != std::string::npos, stretched)
            << url << " at " << width << "x" << height << ":\n"
            << said;
        if (stretched) {
            EXPECT_EQ(said.find("stretched"), said.rfind("stretched")) << "said once:\n" << said;
        }
    }
    fs::remove(file);
}

TEST(CameraWorker, ANetworkSourceAheadOfRealTimeIsNotAnalysedFasterThanItsRate) {
    LoopbackServer server(http_answer("video/mp2t", generated("recording", 25, 10, kTs), true));
    kg::config::Camera cam = file_camera(false);
    cam.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/recording.ts";
    CountingWorker counting(cam, kg::Logging::null_logger());
    auto [stats, frames, worker] = counting.parts();
    const auto t0 = std::chrono::steady_clock::now();
    worker.start();
    // Until the connection ends (the server closes it after the file: an end, or a failed read).
    while (stats.snapshot(std::chrono::steady_clock::now()).last_error.empty() &&
           std::chrono::steady_clock::now() - t0 < 20s) {
        std::this_thread::sleep_for(20ms);
    }
    const auto took = std::chrono::steady_clock::now() - t0;
    const int seen = frames.load();
    worker.stop();
    // 10 s of video at 2 a second by its own time (20 pictures), downloaded in well under that:
    // at most one picture each quarter second of the wall clock.
    const double seconds = std::chrono::duration<double>(took).count();
    EXPECT_LT(seconds, 5.0) << "read at real time";
    EXPECT_GE(seen, 1);
    EXPECT_LE(seen, static_cast<int>(seconds * 4) + 2) << seconds << " s";
}

// Damaged pictures are counted for H.265 too, whose decoder marks none of them (the review of the
// first version: 0 on an H.265 camera losing packets, which H.264's decoder marks): from an error the
// decoder meets until the next key frame. None on the same stream undamaged.
TEST(FfmpegInput, DamagedPicturesAreCountedOnH264AndH265Alike) {
    kg::ingest::initialise_ffmpeg();  // the error lines come through the gateway's log callback
    for (const std::string codec : {"libx264", "libx265 -x265-params log-level=error:bframes=0"}) {
        SCOPED_TRACE(codec);
        const TempFile clean("damage-clean.ts"), damaged("damage-damaged.ts");
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25:duration=8 "
            "-g 50 -c:v " +
            codec + " -f mpegts " + clean.path.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0);
        std::ifstream in(clean.path, std::ios::binary);
        std::string ts((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // 2% of the video's MPEG-TS packets (PID 0x100, not a PES start), 4 bytes of each, seeded.
        std::vector<std::size_t> video;
        for (std::size_t i = 0; i + 188 <= ts.size(); i += 188) {
            const auto b1 = static_cast<unsigned char>(ts[i + 1]), b2 = static_cast<unsigned char>(ts[i + 2]);
            if (ts[i] == 0x47 && ((b1 & 0x1F) << 8 | b2) == 0x100 && (b1 & 0x40) == 0) video.push_back(i);
        }
        ASSERT_GT(video.size(), 100u);
        std::mt19937 rng(7);
        std::shuffle(video.begin(), video.end(), rng);
        for (std::size_t k = 0; k < video.size() / 50; ++k)
            for (int j = 0; j < 4; ++j) ts[video[k] + 8 + rng() % 180] = static_cast<char>(rng() % 256);
        std::ofstream(damaged.path, std::ios::binary) << ts;

        const auto count = [](const fs::path& file) {
            std::atomic<bool> stop{false};
            kg::ingest::FfmpegInput input({file.string()}, stop);
            input.open();
            int frames = 0;
            while (input.next_frame()) ++frames;
            return std::pair{frames, input.frames_damaged()};
        };
        const auto [clean_frames, clean_damaged] = count(clean.path);
        EXPECT_GE(clean_frames, 190);
        EXPECT_EQ(clean_damaged, 0u);
        const auto [frames, damaged_frames] = count(damaged.path);
        EXPECT_GT(damaged_frames, static_cast<std::uint64_t>(frames) / 20) << frames;
    }
}
