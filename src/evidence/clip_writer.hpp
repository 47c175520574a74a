#pragma once
// Remuxes a span of encoded packets to an MP4 file with FFmpeg: no decode, no encode, timestamps
// shifted to start at zero. Written to a temporary name and renamed, so a reader never sees half
// a clip.

#include <string>

#include "evidence/packet_ring.hpp"

namespace kg::evidence {

struct ClipResult {
    bool ok = false;
    std::string error;  // why not, when !ok
    // When ok: kept, but its name may not survive a power cut (the folder could not be flushed).
    std::string warning;
    std::size_t bytes = 0;
    double seconds = 0;  // duration of the clip
};

ClipResult write_mp4(const PacketSpan& span, const std::string& path);

// Reads an MP4 written earlier: ok with its size and duration when FFmpeg opens it and finds a
// video stream that lasts, otherwise why not (a file a power cut left empty or cut short).
ClipResult probe_mp4(const std::string& path);

}  // namespace kg::evidence
