#pragma once
// A folder of labelled images in YOLO format (images/NAME.jpg, labels/NAME.txt with lines
// "class cx cy w h", normalised, or segmentation polygons "class x1 y1 x2 y2 x3 y3 ..."), as the
// evaluation reads it.

#include <map>
#include <string>
#include <vector>

#include "vision/detection.hpp"

namespace kg::eval {

struct LabelledImage {
    std::string image;                     // path
    std::vector<vision::Detection> truth;  // label = the mapped class name
};

// `classes` maps the dataset's class ids to names (ids not in the map are ignored).
// A polygon line (3 or more points) is read as its bounding box, as Ultralytics reads it: the box
// must be one a box line could be, and is clipped to the picture. Throws std::runtime_error naming
// the file and line for a label line that is neither "class cx cy w h" with the centre in [0, 1]
// and the size in (0, 1] nor such a polygon.
std::vector<LabelledImage> load_yolo_folder(const std::string& folder,
                                            const std::map<int, std::string>& classes);

// Detections as YOLO label lines ("class cx cy w h", normalised, the box clipped to the image), the
// format load_yolo_folder() reads and labelling tools (CVAT, labelImg, Label Studio) import: a
// check's boxes on a canteen's own frames, for a person to correct instead of drawing every box.
// `ids` maps a detection's label to the dataset class id; a label not in it is an error (a class
// of the detector the --classes map does not name would otherwise vanish from the file).
std::string yolo_label_lines(const std::vector<vision::Detection>& detections,
                             const std::map<std::string, int>& ids);

// Throws std::invalid_argument naming the class and the detector's labels when one of `classes`
// is not among them: no box of that class would ever be found, and its 0/0/0 read as a verdict
// (a typo, or a detector that names it otherwise).
void require_detector_classes(const std::vector<std::string>& classes, const std::string& detector,
                              const std::vector<std::string>& labels);

// "0=no_mask,1=with_mask" -> {0: no_mask, 1: with_mask}; throws std::invalid_argument.
std::map<int, std::string> parse_class_map(const std::string& text);

}  // namespace kg::eval
