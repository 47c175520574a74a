// Where the gateway keeps things: the outbox of messages not yet sent, the evidence (snapshots and
// clips), and the training frames saved for labelling.
#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>

#include "config/read_sections.hpp"

namespace kg::config::detail {

namespace {

// A folder's path: empty would be the configuration's own folder, never what was meant.
bool folder_path(Reader& r, const YAML::Node& node, const std::string& key, std::string& out) {
    std::string text;
    if (!r.string(node, key, text)) return false;
    if (text.empty()) {
        r.error(node, key, "empty: give the folder's path");
        return false;
    }
    out = r.resolve(text).string();
    return true;
}

}  // namespace

void read_outbox(Reader& r, const YAML::Node& n, Outbox& o) {
    if (!r.map(n, "outbox", {"path", "max_messages", "max_size", "keep_sent", "keep_sent_size"})) return;
    if (n["path"]) {
        // The outbox is a file: a folder's path was taken, failed to open at the start, and the
        // gateway ran with its outbox in memory, lost at the next restart.
        std::string text;
        if (r.string(n["path"], "outbox.path", text)) {
            std::error_code ec;
            if (text.empty()) {
                r.error(n["path"], "outbox.path",
                        "empty: give the outbox's file, e.g. /var/lib/kitchen-gateway/outbox.db");
            } else if (text == ":memory:") {
                o.path = text;
            } else if (const auto path = r.resolve(text);
                       text.back() == '/' || std::filesystem::is_directory(path, ec)) {
                r.error(n["path"], "outbox.path",
                        fmt::format("'{}' is a folder: the outbox is a file, e.g. {}", text,
                                    (path / "outbox.db").lexically_normal().string()));
            } else {
                o.path = path.string();
            }
        }
    }
    if (n["max_messages"]) {
        int v = 0;
        if (r.integer(n["max_messages"], "outbox.max_messages", v, 10, 100000000))
            o.max_messages = static_cast<std::size_t>(v);
    }
    if (n["max_size"]) {
        // Below this an outage of minutes at a busy site fills it with snapshots, and a single
        // snapshot (tens to hundreds of KiB) may not fit at all.
        constexpr std::size_t kMinOutbox = 16u << 20;
        std::size_t v = 0;
        if (r.size(n["max_size"], "outbox.max_size", v)) {
            if (v < kMinOutbox) {
                r.error(n["max_size"], "outbox.max_size",
                        fmt::format("{} bytes is less than the minimum 16MiB", v));
            } else {
                o.max_bytes = v;
            }
        }
    }
    if (n["keep_sent"]) {
        // "none" (or 0) keeps nothing: every replay request is then answered lost.
        // Compared after ${NAME} is replaced: `keep_sent: ${KEEP}` with KEEP=none was refused.
        const auto keep = n["keep_sent"];
        std::string text;
        if (!keep.IsScalar()) {
            r.duration(keep, "outbox.keep_sent", o.keep_sent, true);  // says what it expected
        } else if (r.string(keep, "outbox.keep_sent", text)) {
            if (text == "none") {
                o.keep_sent = Duration::zero();
            } else {
                r.duration(keep, "outbox.keep_sent", o.keep_sent, true);
            }
        }
    }
    if (n["keep_sent_size"]) r.size(n["keep_sent_size"], "outbox.keep_sent_size", o.keep_sent_bytes, true);
}

void read_evidence(Reader& r, const YAML::Node& n, Evidence& e) {
    if (!r.map(n, "evidence",
               {"path", "max_size", "max_age", "min_free", "clip_pre", "clip_post", "jpeg_quality",
                "mqtt_snapshots"})) {
        return;
    }
    if (n["path"]) folder_path(r, n["path"], "evidence.path", e.path);
    if (n["max_size"]) r.size(n["max_size"], "evidence.max_size", e.max_bytes);
    if (n["max_age"]) r.duration(n["max_age"], "evidence.max_age", e.max_age);
    if (n["min_free"]) r.size(n["min_free"], "evidence.min_free", e.min_free, true);
    if (n["clip_pre"]) r.duration(n["clip_pre"], "evidence.clip_pre", e.clip_pre, true);
    if (n["clip_post"]) r.duration(n["clip_post"], "evidence.clip_post", e.clip_post, true);
    if (n["jpeg_quality"]) r.integer(n["jpeg_quality"], "evidence.jpeg_quality", e.jpeg_quality, 10, 100);
    if (n["mqtt_snapshots"]) r.boolean(n["mqtt_snapshots"], "evidence.mqtt_snapshots", e.mqtt_snapshots);
}

void read_training_frames(Reader& r, const YAML::Node& n, TrainingFrames& t) {
    // The section turns it on, an empty one with every default; `enabled: false` keeps the
    // settings while saving is off (frames saved before still expire).
    if (n.IsNull()) {
        t.enabled = true;
        return;
    }
    if (!r.map(n, "training_frames",
               {"enabled", "path", "every", "max_size", "max_age", "min_free", "jpeg_quality", "schedule",
                "cameras"})) {
        return;
    }
    t.enabled = true;
    if (n["enabled"]) r.boolean(n["enabled"], "training_frames.enabled", t.enabled);
    if (n["path"]) folder_path(r, n["path"], "training_frames.path", t.path);
    if (n["every"] && r.duration(n["every"], "training_frames.every", t.every) &&
        t.every < std::chrono::seconds(1)) {
        // More often than any labelling needs, and file names carry only the second.
        r.error(n["every"], "training_frames.every", "must be at least 1s");
    }
    if (n["max_size"]) r.size(n["max_size"], "training_frames.max_size", t.max_bytes);
    if (n["max_age"]) r.duration(n["max_age"], "training_frames.max_age", t.max_age);
    if (n["min_free"]) r.size(n["min_free"], "training_frames.min_free", t.min_free, true);
    if (n["jpeg_quality"])
        r.integer(n["jpeg_quality"], "training_frames.jpeg_quality", t.jpeg_quality, 10, 100);
    if (n["schedule"]) r.string(n["schedule"], "training_frames.schedule", t.schedule);
    if (n["cameras"]) r.strings(n["cameras"], "training_frames.cameras", t.cameras);
}

}  // namespace kg::config::detail
