#pragma once
// Where a check applies on one camera: named zones (normalised polygons) and privacy/ignore masks.
// A detection belongs to a zone when the bottom-centre of its box (where a person stands) is inside
// it, as Frigate users expect; a detection whose box centre lies in a mask is discarded.

#include <string>
#include <vector>

#include "vision/check.hpp"

namespace kg::rules {

struct Point {
    float x = 0, y = 0;
    bool operator==(const Point&) const = default;
};
using Polygon = std::vector<Point>;

bool contains(const Polygon& polygon, Point p);

// Where a detection stands, for zones: the middle of its bottom edge, kept inside the picture.
Point standing_point(const vision::Box& box);

struct Zone {
    std::string name;
    Polygon polygon;
    std::vector<std::string> checks;  // empty: every check
    bool applies_to(const std::string& check) const;
};

class ZoneFilter {
public:
    ZoneFilter(std::vector<Zone> zones, std::vector<Polygon> masks);

    // Turns one check's raw observation into what the event trackers see: boxes in masks removed,
    // then one observation per zone that applies to the check (present if a box is in it), or the
    // observation itself when no zone applies. A zone applies when it names the observation's
    // check or `producer`, the configured check that made it (a user model's `model:<name>`, whose
    // classes map to checks of their own). Observations their check placed (camera health, region
    // checks) are never split.
    void apply(const vision::Observation& raw, const std::string& producer,
               std::vector<vision::Observation>& out) const;
    void apply(const vision::Observation& raw, std::vector<vision::Observation>& out) const {
        apply(raw, raw.check, out);
    }

    const std::vector<Zone>& zones() const { return zones_; }
    const std::vector<Polygon>& masks() const { return masks_; }

private:
    std::vector<Zone> zones_;
    std::vector<Polygon> masks_;
};

}  // namespace kg::rules
