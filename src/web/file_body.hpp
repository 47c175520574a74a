#pragma once
// A part of an open file as the body of a Beast response, read a chunk at a time as the socket takes
// it: a clip of 90 MiB sent to a slow phone costs its connection one chunk of memory, not the clip,
// and the thread that serves every connection reads no more at once than one chunk.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional.hpp>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>

#include "common/fd.hpp"

namespace kg::web {

struct FilePartBody {
    static constexpr std::size_t kChunk = 64 * 1024;

    struct value_type {
        Fd file{-1};
        std::uint64_t offset = 0;  // of the part's first byte in the file
        std::uint64_t size = 0;    // bytes of the part
    };

    static std::uint64_t size(const value_type& body) { return body.size; }

    class writer {
    public:
        using const_buffers_type = boost::asio::const_buffer;

        template <bool isRequest, class Fields>
        writer(const boost::beast::http::header<isRequest, Fields>&, const value_type& body) : body_(body) {}

        void init(boost::beast::error_code& ec) {
            ec = {};
            chunk_ = std::make_unique<char[]>(static_cast<std::size_t>(
                std::min<std::uint64_t>(kChunk, std::max<std::uint64_t>(body_.size, 1))));
        }

        boost::optional<std::pair<const_buffers_type, bool>> get(boost::beast::error_code& ec) {
            ec = {};
            const std::uint64_t left = body_.size - done_;
            if (left == 0) return boost::none;
            const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, kChunk));
            ssize_t n;
            do {
                n = ::pread(body_.file.get(), chunk_.get(), want, static_cast<off_t>(body_.offset + done_));
            } while (n < 0 && errno == EINTR);
            if (n < 0) {
                ec = boost::beast::error_code(errno, boost::system::system_category());
                return boost::none;
            }
            if (n == 0) {
                // Cut short while it was sent (written over): the head promised more than there is,
                // so the connection ends and the client sees a short body, not a spliced one.
                ec = boost::beast::error_code(EIO, boost::system::system_category());
                return boost::none;
            }
            done_ += static_cast<std::uint64_t>(n);
            return std::make_pair(const_buffers_type(chunk_.get(), static_cast<std::size_t>(n)),
                                  done_ < body_.size);
        }

    private:
        const value_type& body_;
        std::unique_ptr<char[]> chunk_;
        std::uint64_t done_ = 0;
    };
};

// A stored file, or part of it, as an answer: see file_response().
using FileAnswer = boost::beast::http::response<FilePartBody>;

}  // namespace kg::web
