#include "vision/dnn/manifest.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "common/env.hpp"
#include "common/short_text.hpp"

namespace kg::vision::dnn {
namespace fs = std::filesystem;
namespace {

class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& message) const {
        const auto mark = at.Mark();
        throw ManifestError(
            fmt::format("{}:{}:{}: {}: {}", file_, mark.line + 1, mark.column + 1, key, message));
    }

    // `path`: the key as messages name it, when `key` sits inside another (`ensemble[0].model`).
    YAML::Node need(const YAML::Node& parent, const char* key, const std::string& path = {}) const {
        const auto n = parent[key];
        if (!n) fail(parent, path.empty() ? key : path, "missing required key");
        return n;
    }

    template <typename T>
    T as(const YAML::Node& n, const std::string& key) const {
        try {
            return n.as<T>();
        } catch (const YAML::Exception&) {
            fail(n, key, "wrong type");
        }
    }

    // A key the loader does not read is refused, not ignored: `score_treshold: 0.9` must not
    // leave the default threshold in force behind a configuration that passed --check-config.
    void only(const YAML::Node& n, const std::string& key, std::initializer_list<const char*> known) const {
        if (!n.IsMap()) fail(n, key.empty() ? "manifest" : key, "expected a mapping");
        for (const auto& kv : n) {
            const auto name = kv.first.Scalar();
            if (std::any_of(known.begin(), known.end(), [&](const char* k) { return name == k; })) continue;
            std::string list;
            for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
            fail(kv.first, key.empty() ? name : key + "." + name,
                 fmt::format("unknown key (known: {})", list));
        }
    }

    std::string expand(const YAML::Node& n, const std::string& key) const {
        std::string out, missing;
        if (!expand_env(as<std::string>(n, key), out, missing)) {
            fail(n, key, fmt::format("environment variable '{}' is not set", missing));
        }
        return out;
    }

private:
    std::string file_;
};

InputSpec read_input(const Reader& r, const YAML::Node& input, const std::string& key, bool resizable) {
    if (resizable) {
        r.only(input, key, {"width", "height", "color", "mean", "scale", "resize"});
    } else {
        r.only(input, key, {"width", "height", "color", "mean", "scale"});
    }
    InputSpec in;
    in.size = {r.as<int>(r.need(input, "width"), key + ".width"),
               r.as<int>(r.need(input, "height"), key + ".height")};
    if (in.size.width < 1 || in.size.height < 1) r.fail(input, key, "width and height must be positive");
    if (input["color"]) {
        const auto c = r.as<std::string>(input["color"], key + ".color");
        if (c != "rgb" && c != "bgr") r.fail(input["color"], key + ".color", "expected rgb or bgr");
        in.rgb = c == "rgb";
    }
    if (input["mean"]) {
        const auto v = r.as<std::vector<double>>(input["mean"], key + ".mean");
        if (v.size() != 3) r.fail(input["mean"], key + ".mean", "expected three values");
        in.mean = cv::Scalar(v[0], v[1], v[2]);
    }
    if (input["scale"]) {
        in.scale = r.as<double>(input["scale"], key + ".scale");
        if (!std::isfinite(in.scale) || in.scale == 0)
            r.fail(input["scale"], key + ".scale", "expected a finite number other than 0");
    }
    return in;
}

std::vector<ModelClass> read_classes(const Reader& r, const YAML::Node& classes, const std::string& key,
                                     bool classifier) {
    if (!classes.IsSequence() || classes.size() == 0) r.fail(classes, key, "expected a non-empty list");
    std::vector<ModelClass> out;
    for (std::size_t i = 0; i < classes.size(); ++i) {
        const auto c = classes[i];
        const auto k = fmt::format("{}[{}]", key, i);
        ModelClass mc;
        if (c.IsScalar()) {
            mc.name = r.as<std::string>(c, k);
        } else {
            if (classifier) {
                r.only(c, k, {"name", "check", "label", "severity", "min_probability"});
            } else {
                r.only(c, k, {"name", "check", "label", "severity"});
            }
            mc.name = r.as<std::string>(r.need(c, "name"), k + ".name");
            if (c["check"]) mc.check = r.as<std::string>(c["check"], k + ".check");
            if (c["label"]) mc.label = r.as<std::string>(c["label"], k + ".label");
            if (c["severity"]) {
                mc.severity = r.as<int>(c["severity"], k + ".severity");
                if (mc.severity < 1 || mc.severity > 3)
                    r.fail(c["severity"], k + ".severity", "expected 1, 2 or 3");
            }
        }
        if (mc.label.empty()) mc.label = mc.name;
        // Each goes out in every event of the class (common/short_text.hpp: the room refuses longer).
        if (!is_short_text(mc.label))
            r.fail(c, k,
                   fmt::format("the label '{}' is not a text of 1 to {} bytes without control characters",
                               mc.label.substr(0, 40), kMaxNameBytes));
        if (!mc.check.empty() && !is_short_text(mc.check))
            r.fail(c, k,
                   fmt::format("the check '{}' is not a text of 1 to {} bytes without control characters",
                               mc.check.substr(0, 40), kMaxNameBytes));
        out.push_back(std::move(mc));
    }
    return out;
}

}  // namespace

Manifest load_manifest(const std::string& path) {
    YAML::Node root;
    try {
        root = YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
        throw ManifestError(fmt::format("{}: cannot read the model manifest", path));
    } catch (const YAML::ParserException& e) {
        throw ManifestError(
            fmt::format("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    const Reader r(path);
    r.only(root, "", {"name", "model", "config", "ensemble", "input", "output", "classes", "classifier"});
    const fs::path dir = fs::absolute(path).parent_path();
    auto resolve = [&](const std::string& p) {
        return fs::path(p).is_absolute() ? p : (dir / p).lexically_normal().string();
    };

    Manifest m;
    m.source = path;
    m.name = r.as<std::string>(r.need(root, "name"), "name");
    m.model = resolve(r.expand(r.need(root, "model"), "model"));
    if (root["config"]) m.config = resolve(r.expand(root["config"], "config"));

    const auto input = read_input(r, r.need(root, "input"), "input", true);
    m.input = input.size;
    m.rgb = input.rgb;
    m.mean = input.mean;
    m.scale = input.scale;
    if (root["input"]["resize"]) {
        const auto v = r.as<std::string>(root["input"]["resize"], "input.resize");
        if (v != "stretch" && v != "letterbox")
            r.fail(root["input"]["resize"], "input.resize", "expected stretch or letterbox");
        m.letterbox = v == "letterbox";
    }

    if (const auto e = root["ensemble"]) {
        if (!e.IsSequence()) r.fail(e, "ensemble", "expected a list of network files or {model, input} maps");
        for (std::size_t i = 0; i < e.size(); ++i) {
            const auto key = fmt::format("ensemble[{}]", i);
            Manifest::EnsembleMember member;
            if (e[i].IsMap()) {
                // {model: FILE, input: {width: W, height: H}}: the network at its own input size.
                r.only(e[i], key, {"model", "input"});
                member.model = resolve(r.expand(r.need(e[i], "model", key + ".model"), key + ".model"));
                const auto in = r.need(e[i], "input", key + ".input");
                r.only(in, key + ".input", {"width", "height"});
                member.input = {
                    r.as<int>(r.need(in, "width", key + ".input.width"), key + ".input.width"),
                    r.as<int>(r.need(in, "height", key + ".input.height"), key + ".input.height")};
                if (member.input.width < 1 || member.input.height < 1)
                    r.fail(in, key + ".input", "width and height must be positive");
                // A letterbox of another shape pads another share of the input: its maps would not
                // lie over the model's.
                if (m.letterbox && static_cast<long>(member.input.width) * m.input.height !=
                                       static_cast<long>(member.input.height) * m.input.width) {
                    r.fail(
                        in, key + ".input",
                        fmt::format("{}x{} is not the aspect ratio of input {}x{}: with resize: letterbox "
                                    "the maps would not lie over each other",
                                    member.input.width, member.input.height, m.input.width, m.input.height));
                }
                if (member.input == m.input) member.input = {};
            } else {
                member.model = resolve(r.expand(e[i], key));
            }
            // Twice the same network at the same input would weigh it double and, shared, not run it
            // twice anyway. (At another input it is another view of the picture.)
            const auto same = [&](const Manifest::EnsembleMember& o) {
                return o.model == member.model && o.input == member.input;
            };
            if ((member.model == m.model && member.input.empty()) ||
                std::any_of(m.ensemble.begin(), m.ensemble.end(), same))
                r.fail(e[i], key,
                       fmt::format("{} is already in the ensemble at that input (model: counts as one)",
                                   member.model));
            m.ensemble.push_back(std::move(member));
        }
    }

    const auto out = r.need(root, "output");
    r.only(out, "output",
           {"layout", "names", "priors", "variances", "background_first", "score_threshold", "nms_iou",
            "nms_area_offset", "class_agnostic_nms"});
    const auto layout = r.as<std::string>(r.need(out, "layout"), "output.layout");
    if (layout == "ultraface") {
        m.layout = Layout::ultraface;
    } else if (layout == "ssd") {
        m.layout = Layout::ssd;
    } else if (layout == "yolov5") {
        m.layout = Layout::yolov5;
    } else if (layout == "yolov8") {
        m.layout = Layout::yolov8;
    } else if (layout == "centernet") {
        m.layout = Layout::centernet;
    } else {
        r.fail(out["layout"], "output.layout",
               fmt::format("'{}' is not ultraface, ssd, yolov5, yolov8 or centernet", layout));
    }
    if (out["names"]) m.outputs = r.as<std::vector<std::string>>(out["names"], "output.names");
    const std::size_t wanted = m.layout == Layout::ultraface || m.layout == Layout::ssd ? 2 : 1;
    if (!m.outputs.empty() && m.outputs.size() != wanted) {
        r.fail(out["names"], "output.names", fmt::format("the {} layout reads {} outputs", layout, wanted));
    }
    // Only the ssd decoder reads these; elsewhere they would pass --check-config and change nothing.
    if (m.layout != Layout::ssd) {
        for (const char* key : {"priors", "variances", "background_first"}) {
            if (out[key])
                r.fail(out[key], fmt::format("output.{}", key),
                       fmt::format("the {} layout does not read it (ssd only)", layout));
        }
    }
    if (m.layout == Layout::ssd) {
        const auto priors = r.need(out, "priors");
        r.only(priors, "output.priors", {"feature_maps", "sizes", "ratios"});
        for (const auto& fm : r.as<std::vector<std::vector<int>>>(r.need(priors, "feature_maps"),
                                                                  "output.priors.feature_maps")) {
            if (fm.size() != 2 || fm[0] < 1 || fm[1] < 1)
                r.fail(priors["feature_maps"], "output.priors.feature_maps",
                       "expected [width, height] pairs of at least 1");
            m.priors.feature_maps.emplace_back(fm[0], fm[1]);
        }
        m.priors.anchor_sizes =
            r.as<std::vector<std::vector<float>>>(r.need(priors, "sizes"), "output.priors.sizes");
        m.priors.anchor_ratios =
            r.as<std::vector<std::vector<float>>>(r.need(priors, "ratios"), "output.priors.ratios");
        if (m.priors.anchor_sizes.size() != m.priors.feature_maps.size() ||
            m.priors.anchor_ratios.size() != m.priors.feature_maps.size()) {
            r.fail(priors, "output.priors", "one list of sizes and of ratios per feature map");
        }
        for (const auto* list : {&m.priors.anchor_sizes, &m.priors.anchor_ratios}) {
            const bool sizes = list == &m.priors.anchor_sizes;
            for (std::size_t i = 0; i < list->size(); ++i) {
                const auto& v = (*list)[i];
                const bool positive =
                    std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x) && x > 0; });
                if (v.empty() || !positive) {
                    const char* name = sizes ? "sizes" : "ratios";
                    r.fail(priors[name], fmt::format("output.priors.{}[{}]", name, i),
                           "expected a non-empty list of positive numbers");
                }
            }
        }
        if (out["variances"]) {
            const auto v = r.as<std::vector<float>>(out["variances"], "output.variances");
            if (v.size() != 4) r.fail(out["variances"], "output.variances", "expected four values");
            m.variances = cv::Vec4f(v[0], v[1], v[2], v[3]);
        }
        if (out["background_first"])
            m.background_first = r.as<bool>(out["background_first"], "output.background_first");
    }
    if (out["score_threshold"]) {
        m.score_threshold = r.as<float>(out["score_threshold"], "output.score_threshold");
        if (!(m.score_threshold >= 0 && m.score_threshold <= 1))
            r.fail(out["score_threshold"], "output.score_threshold", "expected 0 to 1");
    }
    if (out["nms_iou"]) {
        m.nms_iou = r.as<float>(out["nms_iou"], "output.nms_iou");
        if (!(m.nms_iou > 0 && m.nms_iou <= 1))
            r.fail(out["nms_iou"], "output.nms_iou", "expected above 0, up to 1");
    }
    if (out["nms_area_offset"]) {
        m.nms_area_offset = r.as<float>(out["nms_area_offset"], "output.nms_area_offset");
        if (!(m.nms_area_offset >= 0 && m.nms_area_offset <= 1))
            r.fail(out["nms_area_offset"], "output.nms_area_offset", "expected 0 to 1");
    }
    if (out["class_agnostic_nms"])
        m.class_agnostic_nms = r.as<bool>(out["class_agnostic_nms"], "output.class_agnostic_nms");

    if (!m.ensemble.empty() && m.layout != Layout::centernet) {
        r.fail(root["ensemble"], "ensemble",
               fmt::format("the {} layout's outputs cannot be averaged (centernet only)", layout));
    }

    m.classes = read_classes(r, r.need(root, "classes"), "classes", false);

    if (const auto c = root["classifier"]) {
        r.only(c, "classifier", {"model", "input", "output", "expand", "square", "min_score", "classes"});
        ClassifierSpec spec;
        spec.model = resolve(r.expand(r.need(c, "model"), "classifier.model"));
        spec.input = read_input(r, r.need(c, "input"), "classifier.input", false);
        if (c["output"]) spec.output = r.as<std::string>(c["output"], "classifier.output");
        if (c["expand"]) {
            spec.expand = r.as<float>(c["expand"], "classifier.expand");
            if (!(spec.expand >= 0 && spec.expand <= 2))  // NaN too
                r.fail(c["expand"], "classifier.expand", "expected 0 to 2 (a fraction of the box)");
        }
        if (c["square"]) spec.square = r.as<bool>(c["square"], "classifier.square");
        if (c["min_score"]) {
            spec.min_score = r.as<float>(c["min_score"], "classifier.min_score");
            if (!(spec.min_score >= 0 && spec.min_score <= 1))
                r.fail(c["min_score"], "classifier.min_score", "expected 0 to 1");
        }
        const auto cls = r.need(c, "classes");
        spec.classes = read_classes(r, cls, "classifier.classes", true);
        for (std::size_t i = 0; i < cls.size(); ++i) {
            float p = 0;
            if (cls[i].IsMap() && cls[i]["min_probability"]) {
                const auto key = fmt::format("classifier.classes[{}].min_probability", i);
                p = r.as<float>(cls[i]["min_probability"], key);
                if (!(p >= 0 && p <= 1)) r.fail(cls[i]["min_probability"], key, "expected 0 to 1");
            }
            spec.min_probability.push_back(p);
        }
        m.classifier = std::move(spec);
    }
    return m;
}

}  // namespace kg::vision::dnn
