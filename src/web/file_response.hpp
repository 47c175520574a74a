#pragma once
// A stored file (an event's clip or snapshot) as an HTTP response, or the part of it the client asks
// for (RFC 9110 14, byte ranges): a player seeks in a clip by asking for the bytes at the time it
// wants, and Safari plays no video from a server that ignores such requests. Only the bytes asked
// for are read, and a HEAD request reads none.

#include <cstdint>
#include <string>
#include <string_view>

#include "web/http_server.hpp"

namespace kg::web {

// What a Range field asks of a file of `size` bytes.
struct ByteRange {
    enum class Kind {
        whole,          // no range, or one this server does not answer: the whole file, 200
        part,           // bytes first..last (inclusive), 206
        unsatisfiable,  // starts past the end, 416
    };
    Kind kind = Kind::whole;
    std::uint64_t first = 0, last = 0;
};

// A Range field's value against a file of `size` bytes. Another unit, several ranges and a field
// that is not well formed are answered with the whole file (RFC 9110 14.2 lets a server ignore the
// field; several ranges would need a multipart body no player asks for).
ByteRange byte_range(std::string_view field, std::uint64_t size);

// The file at `path` as the answer to `req` (GET or HEAD), of `content_type`: 200 with
// `Accept-Ranges: bytes`, 206 with the part a GET asked for, 416 for a part past the end, 404 when
// the file is gone. Its ETag (size and modification time) is what `If-Range` is checked against: a
// part of a file that changed since the client's last part is not spliced onto it. A GET's body is
// a FileAnswer holding the file open; everything else is a Response built whole.
Answer file_response(const Request& req, const std::string& path, const std::string& content_type);

}  // namespace kg::web
