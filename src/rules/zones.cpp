#include "rules/zones.hpp"

#include <algorithm>

namespace kg::rules {

bool contains(const Polygon& poly, Point p) {
    // Even-odd ray casting; points on an edge may fall either way, which is fine for detections.
    bool inside = false;
    for (std::size_t i = 0, j = poly.size() - 1; i < poly.size(); j = i++) {
        const auto& a = poly[i];
        const auto& b = poly[j];
        if ((a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x)
            inside = !inside;
    }
    return inside;
}

Point standing_point(const vision::Box& b) {
    // Just inside the picture: detectors clip boxes to it, and a box down to the bottom edge (feet
    // out of shot, a ceiling camera's usual view) stood at y = 1.0, on the edge of a zone reaching
    // the bottom, which the even-odd test puts outside: it counted in no zone at all.
    constexpr float kInside = 1.0f - 1e-4f;
    return {std::clamp(b.x + b.w / 2, 0.0f, kInside), std::clamp(b.y + b.h, 0.0f, kInside)};
}

bool Zone::applies_to(const std::string& check) const {
    return checks.empty() || std::find(checks.begin(), checks.end(), check) != checks.end();
}

ZoneFilter::ZoneFilter(std::vector<Zone> zones, std::vector<Polygon> masks)
    : zones_(std::move(zones)), masks_(std::move(masks)) {}

void ZoneFilter::apply(const vision::Observation& raw, const std::string& producer,
                       std::vector<vision::Observation>& out) const {
    auto applies = [&](const Zone& z) { return z.applies_to(raw.check) || z.applies_to(producer); };
    const bool zoned = !raw.placed && std::any_of(zones_.begin(), zones_.end(), applies);
    auto per_zone = [&](const Zone& z) {
        vision::Observation o;
        o.check = raw.check;
        o.label = raw.label;
        o.zone = z.name;
        o.severity = raw.severity;
        return o;
    };

    if (raw.boxes.empty()) {
        // A condition its check placed passes as it is, present or not. "Nothing detected" reaches
        // every zone's tracker so that open events there can end.
        if (!zoned) {
            out.push_back(raw);
            return;
        }
        for (const auto& z : zones_) {
            if (applies(z)) out.push_back(per_zone(z));
        }
        return;
    }

    auto max_score = [](const std::vector<vision::Box>& boxes) {
        float s = 0;
        for (const auto& b : boxes) s = std::max(s, b.score);
        return s;
    };
    vision::Observation kept = raw;
    kept.boxes.clear();
    for (const auto& b : raw.boxes) {
        const Point centre{b.x + b.w / 2, b.y + b.h / 2};
        if (std::none_of(masks_.begin(), masks_.end(),
                         [&](const Polygon& m) { return contains(m, centre); })) {
            kept.boxes.push_back(b);
        }
    }
    if (!zoned) {
        kept.score = max_score(kept.boxes);
        kept.present = raw.present && !kept.boxes.empty();
        out.push_back(std::move(kept));
        return;
    }
    for (const auto& z : zones_) {
        if (!applies(z)) continue;
        vision::Observation o = per_zone(z);
        for (const auto& b : kept.boxes) {
            if (contains(z.polygon, standing_point(b))) o.boxes.push_back(b);
        }
        o.score = max_score(o.boxes);
        o.present = raw.present && !o.boxes.empty();
        out.push_back(std::move(o));
    }
}

}  // namespace kg::rules
