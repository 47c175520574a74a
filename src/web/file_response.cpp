#include "web/file_response.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>

#include "common/fd.hpp"
#include "web/field_value.hpp"

namespace kg::web {
namespace {

// 1*DIGIT; a number too large for 64 bits reads as the largest (it is past any file's end).
std::optional<std::uint64_t> number(std::string_view digits) {
    if (digits.empty()) return std::nullopt;
    for (const char c : digits)
        if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
    return value;
}

}  // namespace

ByteRange byte_range(std::string_view field, std::uint64_t size) {
    const ByteRange whole;
    const auto eq = field.find('=');
    if (eq == std::string_view::npos) return whole;
    const auto unit = without_ows(field.substr(0, eq));
    if (!boost::beast::iequals(boost::beast::string_view(unit.data(), unit.size()), "bytes")) return whole;
    const auto spec = without_ows(field.substr(eq + 1));
    const auto dash = spec.find('-');
    if (spec.find(',') != std::string_view::npos || dash == std::string_view::npos) return whole;
    const auto from = number(spec.substr(0, dash));
    const auto to = spec.size() > dash + 1 ? number(spec.substr(dash + 1)) : std::nullopt;
    if (dash + 1 < spec.size() && !to) return whole;  // "5-x"
    if (!from) {
        // "-N": the last N bytes; all of them when the file is shorter.
        if (dash != 0 || !to) return whole;
        if (*to == 0 || size == 0) return {ByteRange::Kind::unsatisfiable};
        return {ByteRange::Kind::part, size - std::min(*to, size), size - 1};
    }
    if (to && *to < *from) return whole;  // not a range at all (RFC 9110 14.1.1)
    if (*from >= size) return {ByteRange::Kind::unsatisfiable};
    return {ByteRange::Kind::part, *from, to ? std::min(*to, size - 1) : size - 1};
}

Answer file_response(const Request& req, const std::string& path, const std::string& content_type) {
    // Not blocking: a FIFO put where a file was would hold the server's thread until a writer came.
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    const int error = fd.get() < 0 ? errno : 0;
    struct stat st {};
    if (fd.get() < 0 && error != ENOENT && error != ENOTDIR) {
        // Out of file descriptors, an I/O error: not a file that is gone, which a client gives up on.
        auto res = text_response(
            req, http::status::service_unavailable,
            fmt::format("the evidence file cannot be read now ({}); ask again\n", std::strerror(error)));
        res.set(http::field::retry_after, "5");
        return res;
    }
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
        return text_response(req, http::status::not_found, "evidence file is gone\n");
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::string etag = fmt::format("\"{:x}-{:x}.{:x}\"", size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);

    ByteRange range;
    // Ranges are for GET alone (RFC 9110 14.2); a validator other than this file's current one asks
    // for the whole file.
    const auto asked = req[http::field::range];
    const std::string_view if_range(req[http::field::if_range].data(), req[http::field::if_range].size());
    if (req.method() == http::verb::get && !asked.empty() && (if_range.empty() || if_range == etag))
        range = byte_range(std::string_view(asked.data(), asked.size()), size);
    if (range.kind == ByteRange::Kind::unsatisfiable) {
        auto res =
            text_response(req, http::status::range_not_satisfiable,
                          fmt::format("the range asked for is past the file's end ({} bytes)\n", size));
        res.set(http::field::content_range, fmt::format("bytes */{}", size));
        return res;
    }
    const bool part = range.kind == ByteRange::Kind::part;
    const std::uint64_t first = part ? range.first : 0;
    const std::uint64_t count = part ? range.last - range.first + 1 : size;
    auto res = text_response(req, part ? http::status::partial_content : http::status::ok, {}, content_type);
    res.set(http::field::accept_ranges, "bytes");
    res.set(http::field::etag, etag);
    if (part) res.set(http::field::content_range, fmt::format("bytes {}-{}/{}", first, range.last, size));
    if (req.method() == http::verb::head) {
        res.content_length(count);  // HttpSession::send keeps it for a HEAD with no body
        return res;
    }
    // Read as it is sent (FilePartBody), from the descriptor opened here: a file replaced meanwhile
    // is still the one the head describes.
    FileAnswer answer(std::move(res.base()));
    answer.body().file = std::move(fd);
    answer.body().offset = first;
    answer.body().size = count;
    return answer;
}

}  // namespace kg::web
