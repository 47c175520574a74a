#include "ingest/failure_cause.hpp"

#include <cerrno>

extern "C" {
#include <libavutil/error.h>
}

namespace kg::ingest {

const char* to_string(FailureCause cause) {
    switch (cause) {
        case FailureCause::unauthorized:
            return "unauthorized";
        case FailureCause::not_found:
            return "not_found";
        case FailureCause::unreachable:
            return "unreachable";
        case FailureCause::no_video:
            return "no_video";
        case FailureCause::stalled:
            return "stalled";
        case FailureCause::dropped:
            return "dropped";
        case FailureCause::ended:
            return "ended";
        case FailureCause::error:
            return "error";
    }
    return "error";
}

FailureCause open_failure_cause(int averror, std::string_view reason) {
    // FFmpeg's RTSP and HTTP demuxers turn the answer's status into these codes (ff_rtsp_averror,
    // ff_http_averror).
    if (averror == AVERROR_HTTP_UNAUTHORIZED || averror == AVERROR_HTTP_FORBIDDEN)
        return FailureCause::unauthorized;
    if (averror == AVERROR_HTTP_NOT_FOUND || averror == AVERROR(ENOENT)) return FailureCause::not_found;
    if (averror == AVERROR(ECONNREFUSED) || averror == AVERROR(EHOSTUNREACH) ||
        averror == AVERROR(ENETUNREACH) || averror == AVERROR(ETIMEDOUT) || averror == AVERROR(EHOSTDOWN))
        return FailureCause::unreachable;
    // libavformat/tcp.c says a name that does not resolve only in its log, and returns EIO.
    if (reason.find("Failed to resolve hostname") != std::string_view::npos) return FailureCause::unreachable;
    if (averror == AVERROR(ECONNRESET) || averror == AVERROR(EPIPE)) return FailureCause::dropped;
    return FailureCause::error;
}

}  // namespace kg::ingest
