#pragma once
// Why a camera could not be read, in a few words the monitoring room can sort by: the offline
// alert says it, so the room knows whom to send (the network's people, the one who changed the
// camera's password, the installer who typed the path) without logging in to the box.

#include <string_view>

namespace kg::ingest {

enum class FailureCause {
    unauthorized,  // the camera refused the user or password (RTSP/HTTP 401, 403)
    not_found,     // no stream at that address (404: a wrong path or channel; a missing file)
    unreachable,   // no connection: the name does not resolve, refused, no route, no answer
    no_video,      // connected, but no picture: no video stream, none that decodes, video stopped
    stalled,       // the stream stopped sending for input.timeout
    dropped,       // the camera closed or reset the connection, or the read failed
    ended,         // a file played to its end (not looping), an HLS playlist that has ended
    error,         // anything else (the text says what)
};

const char* to_string(FailureCause cause);

// What a failed open's FFmpeg error code says, with FFmpeg's own last error line (`reason`): the
// code alone often says only "Input/output error" for a name that does not resolve.
FailureCause open_failure_cause(int averror, std::string_view reason);

}  // namespace kg::ingest
