// The peer of the camera benchmark: what a user would write instead of the gateway. One thread per
// camera reads every frame with cv::VideoCapture (FFmpeg back-end, full-resolution BGR), and at the
// analysis rate resizes the frame and runs the same checks the gateway runs (camera health, the
// motion gate, the mask and head-covering detectors). No sampling before conversion, no scaling in
// the decoder's colour conversion, no shared pool. Prints frames read and analysed per camera.
//
//   kg-bench-naive --seconds 30 --fps 2 --checks camera_health,mask,head_covering URL...

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <iostream>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <thread>

#include "config/config.hpp"
#include "vision/camera_health.hpp"
#include "vision/detector_check.hpp"
#include "vision/detector_factory.hpp"
#include "vision/motion.hpp"

namespace {

struct Counts {
    std::atomic<std::uint64_t> read{0}, analysed{0};
};

void watch(const std::string& url, double fps, int width, int height, const std::vector<std::string>& checks,
           const std::string& mask_detector, const std::string& head_detector, const std::atomic<bool>& stop,
           Counts& counts) {
    cv::VideoCapture cap(url, cv::CAP_FFMPEG);
    if (!cap.isOpened()) {
        std::cerr << "cannot open " << url << "\n";
        return;
    }
    const double stream_fps = cap.get(cv::CAP_PROP_FPS) > 0 ? cap.get(cv::CAP_PROP_FPS) : 25.0;
    const auto every = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(stream_fps / fps + 0.5));
    kg::vision::MotionMap motion;
    std::vector<std::unique_ptr<kg::vision::Check>> run;
    const kg::Duration refresh = std::chrono::seconds(10);
    for (const auto& c : checks) {
        if (c == "camera_health")
            run.push_back(std::make_unique<kg::vision::CameraHealthCheck>(kg::config::Health{}));
        if (c == "mask")
            run.push_back(std::make_unique<kg::vision::DetectorCheck>(
                "mask", kg::vision::make_detector(mask_detector),
                std::vector<kg::vision::Violation>{{"no_mask", "mask", "no_mask", 0}}, &motion, refresh));
        if (c == "head_covering")
            run.push_back(std::make_unique<kg::vision::DetectorCheck>(
                "head_covering", kg::vision::make_detector(head_detector),
                std::vector<kg::vision::Violation>{{"bare", "head_covering", "bare_head", 0}}, &motion,
                refresh));
    }
    cv::Mat frame;
    kg::ingest::Frame small;
    std::vector<kg::vision::Observation> out;
    std::uint64_t n = 0;
    while (!stop && cap.read(frame)) {
        ++counts.read;
        if (n++ % every != 0) continue;
        cv::resize(frame, small.image, cv::Size(width, height), 0, 0, cv::INTER_AREA);
        small.seq = n;
        small.time = kg::Clock::now();
        motion.update(small.image);
        out.clear();
        for (auto& c : run) c->analyse(small, out);
        ++counts.analysed;
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kg-bench-naive: cv::VideoCapture per camera + the gateway's checks (benchmark peer)"};
    double seconds = 30, fps = 2;
    int width = 640, height = 360;
    std::string checks_text = "camera_health,mask,head_covering";
    std::string mask = "classic:mask", head = "classic:head";
    std::vector<std::string> urls;
    app.add_option("--seconds", seconds);
    app.add_option("--fps", fps);
    app.add_option("--width", width);
    app.add_option("--height", height);
    app.add_option("--checks", checks_text);
    app.add_option("--mask-detector", mask);
    app.add_option("--head-detector", head);
    app.add_option("urls", urls)->required();
    CLI11_PARSE(app, argc, argv);
    std::vector<std::string> checks;
    for (std::size_t at = 0; at <= checks_text.size();) {
        const auto comma = checks_text.find(',', at);
        const auto item = checks_text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        if (!item.empty()) checks.push_back(item);
        if (comma == std::string::npos) break;
        at = comma + 1;
    }
    std::atomic<bool> stop{false};
    std::vector<Counts> counts(urls.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < urls.size(); ++i)
        threads.emplace_back(watch, urls[i], fps, width, height, std::cref(checks), std::cref(mask),
                             std::cref(head), std::cref(stop), std::ref(counts[i]));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < urls.size(); ++i)
        std::cout << urls[i] << " read " << counts[i].read << " analysed " << counts[i].analysed << "\n";
}
