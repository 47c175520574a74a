// The camera-health check on synthetic pictures: a textured scene, black, uniform, covered, frozen.
#include "vision/camera_health.hpp"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

using namespace std::chrono_literals;
using kg::vision::CameraHealthCheck;
using kg::vision::Observation;

namespace {

// A kitchen-like scene: tiles, a counter and noise that changes every frame like a sensor's.
cv::Mat scene(cv::RNG& rng) {
    cv::Mat img(360, 640, CV_8UC3, cv::Scalar(150, 160, 170));
    for (int y = 0; y < 360; y += 24) cv::line(img, {0, y}, {640, y}, cv::Scalar(90, 90, 90), 2);
    for (int x = 0; x < 640; x += 24) cv::line(img, {x, 0}, {x, 200}, cv::Scalar(90, 90, 90), 2);
    cv::rectangle(img, {100, 220}, {540, 330}, cv::Scalar(60, 70, 200), cv::FILLED);
    cv::putText(img, "KITCHEN", {180, 300}, cv::FONT_HERSHEY_SIMPLEX, 2.0, cv::Scalar(255, 255, 255), 4);
    cv::Mat noise(img.size(), img.type());
    rng.fill(noise, cv::RNG::NORMAL, 0, 6);
    cv::add(img, noise, img);
    return img;
}

cv::Mat covered(cv::RNG& rng) {
    // A hand over the lens: dark brown, a smooth gradient, out of focus.
    cv::Mat img(360, 640, CV_8UC3);
    for (int y = 0; y < 360; ++y) {
        img.row(y).setTo(cv::Scalar(30 + y / 12, 45 + y / 10, 70 + y / 8));
    }
    cv::Mat noise(img.size(), img.type());
    rng.fill(noise, cv::RNG::NORMAL, 0, 1.5);
    cv::add(img, noise, img);
    cv::GaussianBlur(img, img, {0, 0}, 6);
    return img;
}

struct HealthRun {
    kg::config::Health cfg;
    CameraHealthCheck check{cfg};
    kg::ingest::Frame frame;
    double t = 0;

    explicit HealthRun(kg::config::Health c = {}) : cfg(c), check(cfg) {}

    // Returns the labels present for this frame.
    std::vector<std::string> feed(const cv::Mat& img) {
        img.copyTo(frame.image);
        frame.time = kg::TimePoint(std::chrono::milliseconds(static_cast<long long>(t * 1000)));
        frame.steady = kg::steady_from_wall(frame.time);
        t += 0.5;
        std::vector<Observation> out;
        check.analyse(frame, out);
        EXPECT_EQ(out.size(), 4u);
        std::vector<std::string> present;
        for (auto& o : out) {
            if (o.present) present.push_back(o.label);
        }
        return present;
    }
};

}  // namespace

TEST(CameraHealth, ANormalSceneRaisesNothing) {
    cv::RNG rng(1);
    HealthRun run;
    for (int i = 0; i < 120; ++i) EXPECT_TRUE(run.feed(scene(rng)).empty()) << "frame " << i;
}

TEST(CameraHealth, BlackPictureIsBlackOnly) {
    cv::RNG rng(2);
    HealthRun run;
    for (int i = 0; i < 10; ++i) run.feed(scene(rng));
    cv::Mat black(360, 640, CV_8UC3, cv::Scalar(4, 4, 4));
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(run.feed(black),
                  std::vector<std::string>{"black"});  // identical frames: still not "frozen"
    }
}

TEST(CameraHealth, UniformGreyIsBlank) {
    HealthRun run;
    cv::Mat grey(360, 640, CV_8UC3, cv::Scalar(128, 128, 128));
    EXPECT_EQ(run.feed(grey), std::vector<std::string>{"blank"});
}

TEST(CameraHealth, AHandOverTheLensIsCovered) {
    cv::RNG rng(3);
    HealthRun run;
    for (int i = 0; i < 40; ++i) run.feed(scene(rng));
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(run.feed(covered(rng)), std::vector<std::string>{"covered"})
            << run.check.last_measures().edge;
    }
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(run.feed(scene(rng)).empty());
}

TEST(CameraHealth, APlainWallIsNotCovered) {
    // A camera that always shows a smooth wall learns that as its normal detail.
    cv::RNG rng(4);
    HealthRun run;
    for (int i = 0; i < 60; ++i) {
        cv::Mat wall = covered(rng);
        cv::line(wall, {320, 0}, {320, 359}, cv::Scalar(20, 20, 20), 3);  // one door frame
        cv::Mat noise(wall.size(), wall.type());
        rng.fill(noise, cv::RNG::NORMAL, 0, 3);
        cv::add(wall, noise, wall);
        EXPECT_TRUE(run.feed(wall).empty()) << "frame " << i << " edge " << run.check.last_measures().edge;
    }
}

TEST(CameraHealth, TheSamePictureForFrozenAfterIsFrozen) {
    cv::RNG rng(5);
    kg::config::Health cfg;
    cfg.frozen_after = 5s;
    HealthRun run(cfg);
    for (int i = 0; i < 10; ++i) run.feed(scene(rng));
    const cv::Mat still = scene(rng);
    int frozen_from = -1;
    for (int i = 0; i < 20; ++i) {
        auto labels = run.feed(still);
        if (!labels.empty() && frozen_from < 0) frozen_from = i;
        if (frozen_from >= 0) {
            EXPECT_EQ(labels, std::vector<std::string>{"frozen"});
        }
    }
    // The first repeat is at i=1 (0.5 s later); 5 s of repeats makes it frozen at i=11.
    EXPECT_EQ(frozen_from, 11);
    EXPECT_TRUE(run.feed(scene(rng)).empty());
}
