// The gateway's assembly (src/app): the detector preflight that --check-config, the start and a
// reload run after the loader, on the project's own manifests in models/.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "app/detector_preflight.hpp"

namespace fs = std::filesystem;
using kg::config::ConfigError;

namespace {

const std::string kModels = std::string(KG_SOURCE_DIR) + "/models";

kg::config::Gateway with_cameras(const std::vector<std::string>& checks) {
    kg::config::Gateway g;
    g.source_file = "gateway.yaml";
    kg::config::Camera cam;
    cam.id = "kitchen";
    cam.checks = checks;
    g.cameras.push_back(cam);
    return g;
}

std::string all(const std::vector<ConfigError>& errors) {
    std::string out;
    for (const auto& e : errors) out += e.to_string() + "\n";
    return out;
}

}  // namespace

TEST(DetectorPreflight, TheShippedDefaultsPass) {
    // "auto": the project's own models, found beside the build as a checkout has them.
    EXPECT_EQ(all(kg::app::check_detectors(with_cameras({"camera_health", "mask", "head_covering"}))), "");
    auto g = with_cameras({"mask", "head_covering"});
    g.mask_detector = "classic:mask";
    g.head_detector = kModels + "/kitchen-head-covering.yaml";
    EXPECT_EQ(all(kg::app::check_detectors(g)), "");
}

TEST(DetectorPreflight, AModelThatCannotRaiseTheChecksAlarmIsNamed) {
    auto g = with_cameras({"mask"});
    g.mask_detector = kModels + "/kitchen-head-covering.yaml";  // heads, covered or bare: no faces
    const auto errors = kg::app::check_detectors(g);
    ASSERT_EQ(errors.size(), 1u) << all(errors);
    EXPECT_EQ(errors[0].key, "detectors.mask");
    EXPECT_NE(errors[0].message.find("no class labelled 'no_mask' (its labels: bare, covered)"),
              std::string::npos)
        << errors[0].message;
}

TEST(DetectorPreflight, AMissingManifestIsNamedWithItsKey) {
    auto g = with_cameras({"head_covering"});
    g.head_detector = kModels + "/kitchen-head-covring.yaml";
    const auto errors = kg::app::check_detectors(g);
    ASSERT_EQ(errors.size(), 1u) << all(errors);
    EXPECT_EQ(errors[0].key, "detectors.head_covering");
    EXPECT_NE(errors[0].message.find("kitchen-head-covring.yaml: cannot read the model manifest"),
              std::string::npos)
        << errors[0].message;
}

TEST(DetectorPreflight, OnlyWhatACameraUsesIsChecked) {
    auto g = with_cameras({"camera_health"});
    g.mask_detector = "/nonexistent/mask.yaml";
    g.models["ppe"] = "/nonexistent/ppe.yaml";
    EXPECT_EQ(all(kg::app::check_detectors(g)), "");
    g.cameras[0].checks.push_back("model:ppe");
    EXPECT_NE(all(kg::app::check_detectors(g)).find("models.ppe: cannot be loaded"), std::string::npos);
    g.cameras[0].enabled = false;  // a disabled camera runs nothing
    EXPECT_EQ(all(kg::app::check_detectors(g)), "");
}

TEST(DetectorPreflight, AUserModelThatFeedsNoCheckIsNamed) {
    const auto dir = fs::temp_directory_path() / ("kg-preflight-" + std::to_string(getpid()));
    fs::create_directories(dir);
    // The shipped head-covering manifest with its classes mapped to no check.
    std::ifstream in(kModels + "/kitchen-head-covering.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto replace = [&](const std::string& from, const std::string& to) {
        const auto at = text.find(from);
        ASSERT_NE(at, std::string::npos) << from;
        text.replace(at, from.size(), to);
    };
    replace("model: kitchen-one-pass-heads.onnx", "model: " + kModels + "/kitchen-one-pass-heads.onnx");
    replace("ensemble: [kitchen-covering-heads.onnx]",
            "ensemble: [" + kModels + "/kitchen-covering-heads.onnx]");
    replace("{name: covered, check: head_covering}", "{name: covered}");
    replace("{name: bare, check: head_covering, severity: 3}", "{name: bare}");
    std::ofstream(dir / "ppe.yaml") << text;
    auto g = with_cameras({"model:ppe"});
    g.models["ppe"] = (dir / "ppe.yaml").string();
    const auto errors = kg::app::check_detectors(g);
    ASSERT_EQ(errors.size(), 1u) << all(errors) << text;
    EXPECT_NE(errors[0].message.find("no class is mapped to a check"), std::string::npos)
        << errors[0].message;
    fs::remove_all(dir);
}

TEST(DetectorPreflight, LoadAndCheckThrowsEveryError) {
    const auto path = fs::temp_directory_path() / ("kg-preflight-" + std::to_string(getpid()) + ".yaml");
    std::ofstream(path) << "site: {id: s, name: S}\n"
                           "detectors: {mask: /nonexistent/m.yaml, head_covering: /nonexistent/h.yaml}\n"
                           "cameras: [{id: a, url: a.mp4, checks: [mask, head_covering]}]\n";
    try {
        kg::app::load_and_check(path.string());
        FAIL() << "accepted";
    } catch (const kg::config::ConfigInvalid& e) {
        ASSERT_EQ(e.errors.size(), 2u);
        EXPECT_EQ(e.errors[0].file, path.string());
        EXPECT_EQ(e.errors[0].key, "detectors.mask");
        EXPECT_EQ(e.errors[1].key, "detectors.head_covering");
    }
    fs::remove(path);
}

TEST(DetectorPreflight, AReferencePictureThatCannotBeReadIsNamedWithItsKey) {
    // It was read only when the camera's check was built: the gateway stopped at start, or at a reload.
    const auto dir = fs::temp_directory_path() / ("kg-preflight-ref-" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "not-a-picture.jpg") << "text";
    auto g = with_cameras({"camera_health", "cleanliness"});
    g.cameras.push_back(g.cameras[0]);
    g.cameras[1].id = "bins";
    g.cameras[1].checks = {"bin_lid"};
    g.cameras[0].scene.reference = (dir / "missing.jpg").string();
    g.cameras[1].scene.reference = (dir / "not-a-picture.jpg").string();
    const auto errors = kg::app::check_detectors(g);
    ASSERT_EQ(errors.size(), 2u) << all(errors);
    EXPECT_EQ(errors[0].key, "cameras[0].scene.reference");
    EXPECT_NE(errors[0].message.find("missing.jpg"), std::string::npos) << errors[0].message;
    EXPECT_EQ(errors[1].key, "cameras[1].scene.reference");
    // A picture passes; so does any file for a camera without a check that reads it.
    cv::imwrite((dir / "floor.png").string(), cv::Mat(90, 160, CV_8UC3, cv::Scalar(40, 80, 120)));
    g.cameras[0].scene.reference = (dir / "floor.png").string();
    g.cameras[1].checks = {"camera_health"};
    EXPECT_EQ(all(kg::app::check_detectors(g)), "");
    fs::remove_all(dir);
}

TEST(DetectorPreflight, ATwoStageUserModelIsJudgedByItsClassifiersClasses) {
    // The shipped mask model as a user's model: its boxes carry the classifier's classes, which map
    // to the mask check; its first stage's class (head) maps to none.
    auto g = with_cameras({"model:faces"});
    g.models["faces"] = kModels + "/kitchen-mask.yaml";
    EXPECT_EQ(all(kg::app::check_detectors(g)), "");
}
