// kitchen-eval: runs a detector over a folder of labelled images (YOLO format) and prints, per
// class, precision and recall at IoU 0.3 and 0.5, plus the median and p95 time per image.
// --operating-points adds, per class, precision and recall at IoU 0.3 when only detections at or
// above each score are kept: what an installer needs to choose a check's threshold.
// --errors adds where the errors are (eval/errors.hpp): the classes given to the objects found,
// what the boxes on no labelled object were near, and the sizes of the objects missed.
// --bootstrap N adds 95% intervals of precision, recall and F1 at IoU 0.3 from N resamplings of the
// images, and --compare SPEC a second detector on the same images with the interval of the F1
// difference (eval/bootstrap.hpp): whether "higher than the reference" holds beyond these photos.
// --write-labels DIR writes each image's detections as a YOLO label file: a check's boxes on a
// canteen's own frames, to be corrected in a labelling tool and trained on (models/README.md).

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <stdexcept>

#include "eval/bootstrap.hpp"
#include "eval/dataset.hpp"
#include "eval/errors.hpp"
#include "eval/label_folder.hpp"
#include "eval/metrics.hpp"
#include "vision/detector_factory.hpp"
#include "vision/dnn/manifest.hpp"
#include "vision/dnn/two_stage_detector.hpp"

namespace {

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    // NOLINTNEXTLINE(bugprone-incorrect-roundings): p is within 0..1, never negative
    const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

// A ratio with nothing to divide by is null, as it prints "-" (kg::eval::ratio_text).
nlohmann::json ratio_json(std::optional<double> ratio) {
    return ratio ? nlohmann::json(*ratio) : nlohmann::json();
}

int count_of(const std::map<std::string, int>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? 0 : it->second;
}

void print_errors(const kg::eval::ErrorCounts& e, const std::vector<std::string>& classes,
                  nlohmann::json& out) {
    fmt::print("errors at IoU 0.3 (own class first, then any; rows: labelled, columns: detected as):\n");
    fmt::print("{:<12}", "");
    for (const auto& d : classes) fmt::print(" {:>10}", d);
    fmt::print(" {:>8} {:>7}\n", "missed", "of");
    std::vector<std::array<double, 3>> missed_q;  // 25% / median / 75% width, per class
    for (const auto& t : classes) {
        fmt::print("{:<12}", t);
        for (const auto& d : classes) {
            const auto it = e.confusion.find({t, d});
            const int n = it == e.confusion.end() ? 0 : it->second;
            fmt::print(" {:>10}", n);
            out["confusion"][t][d] = n;
        }
        const auto m = e.missed_widths.find(t);
        std::vector<double> widths;
        if (m != e.missed_widths.end()) widths.assign(m->second.begin(), m->second.end());
        fmt::print(" {:>8} {:>7}\n", widths.size(), count_of(e.labelled, t));
        missed_q.push_back({percentile(widths, 0.25), percentile(widths, 0.5), percentile(widths, 0.75)});
        // Nothing missed: no widths (null), not widths of 0.
        auto width = [&](std::size_t k) {
            return widths.empty() ? nlohmann::json() : nlohmann::json(missed_q.back()[k]);
        };
        out["missed"][t] = {{"count", widths.size()},
                            {"labelled", count_of(e.labelled, t)},
                            {"width_px_q25", width(0)},
                            {"width_px_median", width(1)},
                            {"width_px_q75", width(2)}};
    }
    fmt::print("boxes on no labelled object, by class detected (misplaced: IoU {:.1f} to 0.3 with one):\n",
               kg::eval::ErrorBreakdown::kNearIou);
    fmt::print("{:<12} {:>10} {:>10} {:>10}\n", "", "duplicate", "misplaced", "background");
    for (const auto& d : classes) {
        const int dup = count_of(e.duplicate, d), mis = count_of(e.misplaced, d),
                  bg = count_of(e.background, d);
        fmt::print("{:<12} {:>10} {:>10} {:>10}\n", d, dup, mis, bg);
        out["unmatched"][d] = {{"duplicate", dup}, {"misplaced", mis}, {"background", bg}};
    }
    fmt::print("width of the objects missed, in image pixels:\n{:<12} {:>10} {:>10} {:>10}\n", "", "25%",
               "median", "75%");
    for (std::size_t i = 0; i < classes.size(); ++i) {
        if (out["missed"][classes[i]]["count"] == 0) {
            fmt::print("{:<12} {:>10} {:>10} {:>10}\n", classes[i], "-", "-", "-");
        } else {
            fmt::print("{:<12} {:>10.0f} {:>10.0f} {:>10.0f}\n", classes[i], missed_q[i][0], missed_q[i][1],
                       missed_q[i][2]);
        }
    }
}

nlohmann::json interval_json(const kg::eval::Interval& i) { return nlohmann::json::array({i.lo, i.hi}); }

void print_intervals(const std::vector<kg::eval::ImageCounts>& images,
                     const std::vector<std::string>& classes, const kg::eval::BootstrapOptions& options,
                     nlohmann::json& out) {
    const auto intervals = kg::eval::bootstrap_intervals(images, classes, options);
    fmt::print("{:.0f}% intervals at IoU 0.3, the {} images resampled {} times (seed {}):\n",
               options.level * 100, images.size(), options.replicates, options.seed);
    // A rare class sits on a few photos: the resampling has only those to vary, and the fewer they
    // are, the more its interval understates the uncertainty. Say how many.
    fmt::print("{:<12} {:>15} {:>15} {:>15} {:>10}\n", "class", "P@0.3", "R@0.3", "F1@0.3", "on images");
    out = {{"replicates", options.replicates}, {"seed", options.seed}, {"level", options.level}};
    for (const auto& cls : classes) {
        const auto& c = intervals.at(cls);
        const auto on = std::count_if(images.begin(), images.end(), [&](const auto& image) {
            const auto it = image.find(cls);
            return it != image.end() && it->second.tp + it->second.fn > 0;
        });
        fmt::print("{:<12} [{:.3f}, {:.3f}] [{:.3f}, {:.3f}] [{:.3f}, {:.3f}] {:>10}\n", cls, c.precision.lo,
                   c.precision.hi, c.recall.lo, c.recall.hi, c.f1.lo, c.f1.hi, on);
        if (c.undefined_precision + c.undefined_recall + c.undefined_f1 > 0) {
            fmt::print("{:<12} undefined in {} / {} / {} of the draws (nothing to divide by), left out\n", "",
                       c.undefined_precision, c.undefined_recall, c.undefined_f1);
        }
        out["classes"][cls] = {
            {"precision", interval_json(c.precision)},
            {"recall", interval_json(c.recall)},
            {"f1", interval_json(c.f1)},
            {"images_with_class", on},
            {"undefined_draws",
             {{"precision", c.undefined_precision}, {"recall", c.undefined_recall}, {"f1", c.undefined_f1}}}};
    }
}

void print_comparison(const std::string& other, const std::vector<kg::eval::ImageCounts>& ours,
                      const std::vector<kg::eval::ImageCounts>& theirs,
                      const std::vector<std::string>& classes, const kg::eval::BootstrapOptions& options,
                      nlohmann::json& out) {
    const auto diffs = kg::eval::bootstrap_f1_difference(ours, theirs, classes, options);
    fmt::print("F1@0.3 against {} on the same {} images, paired ({} resamplings, seed {}):\n", other,
               ours.size(), options.replicates, options.seed);
    fmt::print("{:<12} {:>7} {:>7} {:>7} {:>19} {:>14}\n", "class", "this", "other", "diff",
               fmt::format("{:.0f}% interval", options.level * 100), "this higher in");
    out = {{"detector", other},
           {"replicates", options.replicates},
           {"seed", options.seed},
           {"level", options.level}};
    for (const auto& cls : classes) {
        const auto a = kg::eval::total(ours, cls), b = kg::eval::total(theirs, cls);
        const auto& d = diffs.at(cls);
        fmt::print("{:<12} {:>7} {:>7} {:>+7.3f}   [{:+.3f}, {:+.3f}] {:>13.1f}%\n", cls,
                   kg::eval::ratio_text(a.f1()), kg::eval::ratio_text(b.f1()), d.observed, d.interval.lo,
                   d.interval.hi, d.share_positive * 100);
        out["classes"][cls] = {{"f1_this", ratio_json(a.f1())},
                               {"f1_other", ratio_json(b.f1())},
                               {"difference", d.observed},
                               {"interval", interval_json(d.interval)},
                               {"share_this_higher", d.share_positive}};
    }
}

}  // namespace

// NOLINTNEXTLINE(bugprone-exception-escape): only CLI11's set-up (allocations) is outside the try below
int main(int argc, char** argv) {
    CLI::App app{"kitchen-eval: accuracy and speed of a detector on labelled images"};
    std::string detector_spec, data, classes_text, json_path, dump_path, compare_spec, labels_dir;
    int threads = 1, limit = 0, replicates = 0;
    std::uint64_t seed = 1;
    bool any_class = false, operating_points = false, errors = false, given_boxes = false;
    app.add_option("-d,--detector", detector_spec, "classic:mask, classic:head, or a model manifest (.yaml)")
        ->required();
    app.add_option("--data", data, "folder with images/ and labels/ (YOLO format)")
        ->required()
        ->check(CLI::ExistingDirectory);
    app.add_option("--classes", classes_text,
                   "dataset class ids to names, e.g. 0=no_mask,1=with_mask: names of the detector's classes "
                   "(unless --any-class)")
        ->required();
    app.add_option("--json", json_path, "also write the results as JSON to this file");
    app.add_option("--dump", dump_path, "write every image's detections as JSON to this file");
    app.add_option("--write-labels", labels_dir,
                   "write each image's detections (those the detector keeps) to DIR/<image name>.txt as "
                   "YOLO label lines, class ids from --classes: boxes to correct in a labelling tool "
                   "instead of drawing each one. Never overwrites a file: give an empty folder");
    app.add_option("--threads", threads, "OpenCV threads (1 = one core, as the targets are set)");
    app.add_option("--limit", limit, "evaluate only the first N images");
    app.add_flag("--any-class", any_class,
                 "count every detection as the one class of --classes (e.g. 0=face,1=face): how well a "
                 "detector finds the objects, whatever it decides about them");
    app.add_flag("--given-boxes", given_boxes,
                 "two-stage manifests only: hand the classifier the labelled boxes (of the classes in "
                 "--classes, score 1) instead of the first stage's, so that the figures are the "
                 "classifier's alone (recall: the share it gives the right class; with --errors, its "
                 "confusions)");
    app.add_flag("--operating-points", operating_points,
                 "also print precision and recall at IoU 0.3 for score thresholds 0.1 to 0.9");
    app.add_flag("--errors", errors,
                 "also print where the errors are at IoU 0.3: objects found but given another class, boxes "
                 "on no labelled object (duplicate, misplaced, background), sizes of the objects missed");
    app.add_option(
           "--bootstrap", replicates,
           "also print 95% intervals of precision, recall and F1 at IoU 0.3 from this many resamplings "
           "of the images (e.g. 2000)")
        ->check(CLI::Range(1, 1000000));
    app.add_option(
        "--compare", compare_spec,
        "a second detector (same forms as -d) run on the same images: prints its F1 at IoU 0.3 and "
        "the interval of the difference, paired over the images (--bootstrap resamplings, 2000 if "
        "not given)");
    auto* seed_option =
        app.add_option("--seed", seed, "seed of the resamplings (the same seed gives the same intervals)");
    CLI11_PARSE(app, argc, argv);
    if (!compare_spec.empty() && replicates == 0) replicates = 2000;
    if (seed_option->count() > 0 && replicates == 0) {
        std::cerr
            << "kitchen-eval: --seed sets the resamplings of --bootstrap or --compare: give one of them\n";
        return 2;
    }
    // With --write-labels a stop (Ctrl-C, a service's SIGTERM) is taken between two images, so that
    // the label folder is left as it was: blocked here, before any thread exists that would take it
    // (OpenCV's pool inherits this mask), and looked for with sigpending.
    constexpr std::array kStopSignals{SIGINT, SIGTERM, SIGHUP};
    sigset_t stops;
    sigemptyset(&stops);
    for (const int sig : kStopSignals) sigaddset(&stops, sig);
    if (!labels_dir.empty()) pthread_sigmask(SIG_BLOCK, &stops, nullptr);
    const auto stop_asked = [&] {
        sigset_t pending;
        if (labels_dir.empty() || sigpending(&pending) != 0) return false;
        for (const int sig : kStopSignals)
            if (sigismember(&pending, sig) == 1) return true;
        return false;
    };
    cv::setNumThreads(threads);

    try {
        const auto class_map = kg::eval::parse_class_map(classes_text);
        std::vector<std::string> classes;
        for (const auto& [id, name] : class_map) {
            // Several dataset ids may map to one name (e.g. any face): count it once.
            if (std::find(classes.begin(), classes.end(), name) == classes.end()) classes.push_back(name);
        }
        auto images = kg::eval::load_yolo_folder(data, class_map);
        if (limit > 0 && static_cast<int>(images.size()) > limit)
            images.resize(static_cast<std::size_t>(limit));
        if (any_class && classes.size() != 1) {
            throw std::runtime_error("--any-class needs --classes to name one class, e.g. 0=face,1=face");
        }
        // With --given-boxes a detector is its second stage, fed the labelled boxes.
        struct Judge {
            std::unique_ptr<kg::vision::Detector> detector;
            kg::vision::dnn::TwoStageDetector* second_stage = nullptr;
            explicit operator bool() const { return detector != nullptr; }
        };
        auto make = [&](const std::string& spec) {
            if (!given_boxes) return Judge{kg::vision::make_detector(spec)};
            const std::string path = kg::vision::resolve_detector_spec(spec);
            if (path.rfind("classic:", 0) == 0) {
                throw std::runtime_error(fmt::format(
                    "--given-boxes needs a two-stage manifest (one with classifier:), not {}", spec));
            }
            auto manifest = kg::vision::dnn::load_manifest(path);
            if (!manifest.classifier) {
                throw std::runtime_error(fmt::format(
                    "--given-boxes needs a two-stage manifest: {} has no classifier: section", spec));
            }
            auto two = std::make_unique<kg::vision::dnn::TwoStageDetector>(std::move(manifest));
            auto* raw = two.get();
            return Judge{std::move(two), raw};
        };
        Judge detector = make(detector_spec);
        Judge other;
        if (!compare_spec.empty()) other = make(compare_spec);
        if (!any_class) {
            kg::eval::require_detector_classes(classes, detector_spec, detector.detector->labels());
            if (other) kg::eval::require_detector_classes(classes, compare_spec, other.detector->labels());
        }
        std::vector<kg::eval::ImageCounts> per_image, per_image_other;  // at IoU 0.3, for the bootstrap
        std::map<std::string, int> label_ids;  // class name -> the first dataset id of that name
        for (const auto& [id, name] : class_map) label_ids.emplace(name, id);
        // Checked before any image is run; written all or nothing (a person corrects these files).
        std::optional<kg::eval::LabelFolder> label_folder;
        if (!labels_dir.empty()) {
            std::vector<std::string> paths;
            paths.reserve(images.size());
            for (const auto& li : images) paths.push_back(li.image);
            label_folder.emplace(
                labels_dir, paths,
                any_class ? std::vector<std::string>{classes.front()} : detector.detector->labels(),
                label_ids);
        }

        kg::eval::Accumulator at30(0.3f), at50(0.5f);
        kg::eval::ErrorBreakdown breakdown(0.3f);
        // One accumulator per score threshold; each image's detections are filtered once per row.
        std::vector<float> sweep_thresholds;
        std::vector<kg::eval::Accumulator> sweep;
        if (operating_points) {
            for (int t = 10; t <= 90; t += 5) {
                sweep_thresholds.push_back(static_cast<float>(t) / 100.0f);
                sweep.emplace_back(0.3f);
            }
        }
        std::vector<kg::vision::Detection> kept;
        std::vector<double> times;
        std::vector<kg::vision::Detection> found, given;
        auto run = [&](Judge& judge, const cv::Mat& img, const kg::eval::LabelledImage& li) {
            if (!judge.second_stage) {
                judge.detector->detect(img, found);
                return;
            }
            given.assign(li.truth.begin(), li.truth.end());
            for (auto& box : given) box.score = 1.0f;
            judge.second_stage->classify(img, given, found);
        };
        nlohmann::json dump = nlohmann::json::object();
        std::map<std::string, int> boxes_written;
        bool warmed = false;
        // Both detectors' boxes are counted alike: with --any-class, as the one class named.
        auto count_as_classes = [&] {
            if (any_class) {
                for (auto& box : found) box.label = classes.front();
            }
        };
        for (const auto& li : images) {
            if (stop_asked())
                throw std::runtime_error(fmt::format("stopped: nothing written to {}", labels_dir));
            const cv::Mat img = cv::imread(li.image, cv::IMREAD_COLOR);
            if (img.empty()) {
                std::cerr << "kitchen-eval: cannot read " << li.image << ", skipped\n";
                continue;
            }
            if (!warmed) {  // the first run allocates and plans: not what a camera pays per frame
                run(detector, img, li);
                warmed = true;
            }
            if (other) {  // before the timed run, so that the times are this detector's alone
                run(other, img, li);
                count_as_classes();
                per_image_other.push_back(kg::eval::count_image(li.truth, found, classes, 0.3f));
            }
            const auto t0 = std::chrono::steady_clock::now();
            run(detector, img, li);
            times.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            count_as_classes();
            if (!dump_path.empty()) {
                auto& boxes = dump[li.image] = nlohmann::json::array();
                for (const auto& d : found) {
                    boxes.push_back({{"x", d.x},
                                     {"y", d.y},
                                     {"w", d.w},
                                     {"h", d.h},
                                     {"label", d.label},
                                     {"score", d.score}});
                }
            }
            if (!labels_dir.empty()) {
                for (const auto& d : found) ++boxes_written[d.label];
                label_folder->write(li.image, found);
            }
            per_image.push_back(at30.add(li.truth, found, classes));
            if (errors) breakdown.add(li.truth, found, classes, img.cols);
            at50.add(li.truth, found, classes);
            for (std::size_t t = 0; t < sweep.size(); ++t) {
                kept.clear();
                for (const auto& d : found) {
                    if (d.score >= sweep_thresholds[t]) kept.push_back(d);
                }
                sweep[t].add(li.truth, kept, classes);
            }
        }

        if (label_folder) label_folder->commit();

        nlohmann::json result = {{"detector", detector_spec},
                                 {"data", data},
                                 {"images", times.size()},
                                 {"threads", threads},
                                 {"given_boxes", given_boxes}};
        fmt::print("kitchen-eval: {}{} on {} ({} images, {} thread{})\n", detector_spec,
                   given_boxes ? " (its classifier alone, given the labelled boxes)" : "", data, times.size(),
                   threads, threads == 1 ? "" : "s");
        fmt::print("{:<12} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n", "class", "gt", "P@0.3", "R@0.3",
                   "F1@0.3", "P@0.5", "R@0.5", "F1@0.5");
        int labelled = 0;
        for (const auto& cls : classes) {
            const auto a = at30.counts().count(cls) ? at30.counts().at(cls) : kg::eval::ClassCounts{};
            const auto b = at50.counts().count(cls) ? at50.counts().at(cls) : kg::eval::ClassCounts{};
            labelled += a.tp + a.fn;
            using kg::eval::ratio_text;
            fmt::print("{:<12} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n", cls, a.tp + a.fn,
                       ratio_text(a.precision()), ratio_text(a.recall()), ratio_text(a.f1()),
                       ratio_text(b.precision()), ratio_text(b.recall()), ratio_text(b.f1()));
            auto counts = [](const kg::eval::ClassCounts& c) {
                return nlohmann::json{{"tp", c.tp},
                                      {"fp", c.fp},
                                      {"fn", c.fn},
                                      {"precision", ratio_json(c.precision())},
                                      {"recall", ratio_json(c.recall())},
                                      {"f1", ratio_json(c.f1())}};
            };
            result["classes"][cls] = {{"gt", a.tp + a.fn}, {"iou_0.3", counts(a)}, {"iou_0.5", counts(b)}};
        }
        if (labelled == 0) {
            // Pre-labelling a canteen's frames is the usual case: zeros here would read as a verdict.
            fmt::print("(no labelled object of these classes in {}/labels: nothing to measure against)\n",
                       data);
        }
        if (!labels_dir.empty()) {
            std::string tally;
            for (const auto& cls : classes)
                tally += fmt::format("{}{} {}", tally.empty() ? "" : ", ", cls, boxes_written[cls]);
            fmt::print("wrote {} label files to {} ({})\n", times.size(), labels_dir, tally);
            result["labels_written"] = {
                {"files", times.size()}, {"dir", labels_dir}, {"boxes", boxes_written}};
        }
        if (operating_points) {
            fmt::print("operating points at IoU 0.3 (detections with score >= threshold):\n");
            fmt::print("{:<12} {:>9} {:>5} {:>5} {:>7} {:>7} {:>7}\n", "class", "threshold", "tp", "fp", "P",
                       "R", "F1");
            for (const auto& cls : classes) {
                for (std::size_t t = 0; t < sweep.size(); ++t) {
                    const auto& counts = sweep[t].counts();
                    const auto c = counts.count(cls) ? counts.at(cls) : kg::eval::ClassCounts{};
                    fmt::print("{:<12} {:>9.2f} {:>5} {:>5} {:>7} {:>7} {:>7}\n", cls, sweep_thresholds[t],
                               c.tp, c.fp, kg::eval::ratio_text(c.precision()),
                               kg::eval::ratio_text(c.recall()), kg::eval::ratio_text(c.f1()));
                    result["operating_points"][cls].push_back({{"threshold", sweep_thresholds[t]},
                                                               {"tp", c.tp},
                                                               {"fp", c.fp},
                                                               {"fn", c.fn},
                                                               {"precision", ratio_json(c.precision())},
                                                               {"recall", ratio_json(c.recall())},
                                                               {"f1", ratio_json(c.f1())}});
                }
            }
        }
        if (errors) print_errors(breakdown.counts(), classes, result["errors"]);
        const kg::eval::BootstrapOptions options{replicates, seed, 0.95};
        if (replicates > 0 && !per_image.empty())
            print_intervals(per_image, classes, options, result["bootstrap"]);
        if (other && !per_image.empty()) {
            print_comparison(compare_spec, per_image, per_image_other, classes, options, result["compare"]);
        }
        const double median = percentile(times, 0.5), p95 = percentile(times, 0.95);
        fmt::print("{}time per image: median {:.1f} ms, p95 {:.1f} ms\n",
                   given_boxes ? "the classifier's " : "", median, p95);
        result["time_ms"] = {{"median", median}, {"p95", p95}};
        if (!json_path.empty()) std::ofstream(json_path) << result.dump(2) << "\n";
        if (!dump_path.empty()) std::ofstream(dump_path) << dump.dump() << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "kitchen-eval: " << e.what() << "\n";
        return 2;
    }
}
