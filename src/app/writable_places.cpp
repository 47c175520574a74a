#include "app/writable_places.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/writable_folder.hpp"

namespace kg::app {

std::vector<std::string> unwritable_places(const config::Gateway& cfg) {
    std::vector<std::string> out;
    const auto say = [&](const char* key, const std::string& path, const std::string& why, const char* then) {
        if (!why.empty())
            out.push_back(fmt::format("{} {} cannot be written ({}): {}", key, path, why, then));
    };
    if (cfg.outbox.path != ":memory:")
        say("outbox.path", cfg.outbox.path, unwritable_file_as_is(cfg.outbox.path),
            "the gateway keeps its messages in memory only, lost at a restart or power cut");
    say("evidence.path", cfg.evidence.path, unwritable_folder_as_is(cfg.evidence.path),
        "no snapshot or clip is kept");
    if (cfg.training_frames.enabled)
        say("training_frames.path", cfg.training_frames.path,
            unwritable_folder_as_is(cfg.training_frames.path), "no frame is kept for labelling");
    const bool public_cameras = std::any_of(cfg.cameras.begin(), cfg.cameras.end(),
                                            [](const config::Camera& c) { return c.enabled && c.is_public; });
    if (!cfg.public_side.listen.empty() && public_cameras)
        say("public.hls_dir", cfg.public_side.hls_dir, unwritable_folder_as_is(cfg.public_side.hls_dir),
            "parents get no HLS stream (HTTP-FLV still plays)");
    return out;
}

}  // namespace kg::app
