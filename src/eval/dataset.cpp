#include "eval/dataset.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kg::eval {
namespace fs = std::filesystem;

namespace {

struct LabelLine {
    int cls;
    float cx, cy, w, h;
};

// A box, "class cx cy w h", normalised, the box's size more than nothing; or a segmentation export's
// polygon, "class x1 y1 x2 y2 x3 y3 ...", read as its bounding box as Ultralytics reads it: the box
// must pass the same bounds, and is then clipped to the picture (a polygon traced past its
// edge). Only the first five numbers were read once: a polygon passed as a box made of its first two
// points, and boxes in pixels or with no size were counted as labelled objects.
LabelLine parse_label_line(const std::string& line, const std::string& file, int n) {
    std::istringstream in(line);
    std::vector<std::string> fields;
    for (std::string f; in >> f;) fields.push_back(f);
    const bool polygon = fields.size() >= 7 && fields.size() % 2 == 1;
    if (fields.size() != 5 && !polygon) {
        throw std::runtime_error(
            fmt::format("{}:{}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...' (3 or "
                        "more points), found {} fields",
                        file, n, fields.size()));
    }
    LabelLine out{};
    const auto [end, ec] = std::from_chars(fields[0].data(), fields[0].data() + fields[0].size(), out.cls);
    if (ec != std::errc() || end != fields[0].data() + fields[0].size() || out.cls < 0) {
        throw std::runtime_error(fmt::format("{}:{}: '{}' is not a class id", file, n, fields[0]));
    }
    auto number = [&](const std::string& f, const std::string& name) {
        float v = 0;
        const auto [e, c] = std::from_chars(f.data(), f.data() + f.size(), v);
        if (c != std::errc() || e != f.data() + f.size() || !std::isfinite(v)) {
            throw std::runtime_error(fmt::format("{}:{}: {} '{}' is not a number", file, n, name, f));
        }
        return v;
    };
    std::string values[4];  // as written (a box), or the polygon's box
    float* box[] = {&out.cx, &out.cy, &out.w, &out.h};
    if (!polygon) {
        const char* names[] = {"cx", "cy", "w", "h"};
        for (std::size_t i = 0; i < 4; ++i) {
            *box[i] = number(fields[i + 1], names[i]);
            values[i] = fields[i + 1];
        }
    } else {
        float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
        for (std::size_t i = 1; i < fields.size(); ++i) {
            const bool x = i % 2 == 1;
            const float v = number(fields[i], fmt::format("{}{}", x ? "x" : "y", (i + 1) / 2));
            float& low = x ? x1 : y1;
            float& high = x ? x2 : y2;
            low = i <= 2 ? v : std::min(low, v);
            high = i <= 2 ? v : std::max(high, v);
        }
        out = {out.cls, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1};
        for (std::size_t i = 0; i < 4; ++i) values[i] = fmt::format("{:g}", *box[i]);
    }
    const char* names[] = {"cx", "cy", "w", "h"};
    for (std::size_t i = 0; i < 4; ++i) {
        // A rounding hair outside (1.0000001, -1e-7: exports write what a float division gave) is
        // the edge of the picture; only a value clearly outside is refused.
        constexpr float kRounding = 1e-3F;
        if (*box[i] > 1 && *box[i] <= 1 + kRounding) *box[i] = 1;
        if (*box[i] < 0 && *box[i] >= -kRounding) *box[i] = 0;
        const bool size = i >= 2;
        if (size ? !(*box[i] > 0 && *box[i] <= 1) : !(*box[i] >= 0 && *box[i] <= 1)) {
            throw std::runtime_error(
                fmt::format("{}:{}: {}{} {} is outside {} (YOLO labels are fractions of the "
                            "picture)",
                            file, n, polygon ? "the polygon's box: " : "", names[i], values[i],
                            size ? "(0, 1]" : "[0, 1]"));
        }
    }
    if (polygon) {
        const float x1 = std::max(0.0F, out.cx - out.w / 2), x2 = std::min(1.0F, out.cx + out.w / 2);
        const float y1 = std::max(0.0F, out.cy - out.h / 2), y2 = std::min(1.0F, out.cy + out.h / 2);
        out = {out.cls, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1};
    }
    return out;
}

}  // namespace

std::vector<LabelledImage> load_yolo_folder(const std::string& folder,
                                            const std::map<int, std::string>& classes) {
    const fs::path images = fs::path(folder) / "images", labels = fs::path(folder) / "labels";
    if (!fs::is_directory(images)) throw std::runtime_error(fmt::format("{}: no images/ folder", folder));
    std::vector<LabelledImage> out;
    for (const auto& entry : fs::directory_iterator(images)) {
        // Cameras and phones often write ".JPG": the case of the suffix says nothing about the file.
        auto ext = entry.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (ext != ".jpg" && ext != ".jpeg" && ext != ".png") continue;
        LabelledImage li;
        li.image = entry.path().string();
        const fs::path label_file = labels / (entry.path().stem().string() + ".txt");
        std::ifstream in(label_file);
        std::string line;
        int n = 0;
        while (std::getline(in, line)) {
            ++n;
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            const auto [cls, cx, cy, w, h] = parse_label_line(line, label_file.string(), n);
            const auto it = classes.find(cls);
            if (it == classes.end()) continue;
            vision::Detection d;
            d.x = cx - w / 2;
            d.y = cy - h / 2;
            d.w = w;
            d.h = h;
            d.class_id = cls;
            d.label = it->second;
            d.score = 1;
            li.truth.push_back(d);
        }
        out.push_back(std::move(li));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.image < b.image; });
    return out;
}

std::string yolo_label_lines(const std::vector<vision::Detection>& detections,
                             const std::map<std::string, int>& ids) {
    std::string out;
    for (const auto& d : detections) {
        const auto it = ids.find(d.label);
        if (it == ids.end()) {
            throw std::runtime_error(
                fmt::format("the detector gives class '{}', which --classes does not name", d.label));
        }
        const float x1 = std::clamp(d.x, 0.0f, 1.0f), y1 = std::clamp(d.y, 0.0f, 1.0f);
        const float x2 = std::clamp(d.x + d.w, 0.0f, 1.0f), y2 = std::clamp(d.y + d.h, 0.0f, 1.0f);
        if (x2 <= x1 || y2 <= y1) continue;  // wholly outside the picture: nothing to label
        out += fmt::format("{} {:.6f} {:.6f} {:.6f} {:.6f}\n", it->second, (x1 + x2) / 2, (y1 + y2) / 2,
                           x2 - x1, y2 - y1);
    }
    return out;
}

void require_detector_classes(const std::vector<std::string>& classes, const std::string& detector,
                              const std::vector<std::string>& labels) {
    for (const auto& cls : classes) {
        if (std::find(labels.begin(), labels.end(), cls) != labels.end()) continue;
        throw std::invalid_argument(fmt::format(
            "--classes names '{}', which {} never gives (its classes: {}): name its classes, or give "
            "--any-class to count every box it finds as the one class named",
            cls, detector, fmt::join(labels, ", ")));
    }
}

std::map<int, std::string> parse_class_map(const std::string& text) {
    std::map<int, std::string> out;
    std::istringstream in(text);
    std::string part;
    while (std::getline(in, part, ',')) {
        const auto eq = part.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == part.size()) {
            throw std::invalid_argument(fmt::format("'{}' is not id=name", part));
        }
        const auto id_text = part.substr(0, eq);
        int id = -1;
        const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
        if (ec != std::errc() || end != id_text.data() + id_text.size() || id < 0) {
            throw std::invalid_argument(fmt::format(
                "'{}' is not id=name: '{}' is not a class id (a number, as in the labels)", part, id_text));
        }
        out[id] = part.substr(eq + 1);
    }
    if (out.empty()) throw std::invalid_argument("no classes given");
    return out;
}

}  // namespace kg::eval
