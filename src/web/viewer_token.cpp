#include "web/viewer_token.hpp"

#include <fmt/format.h>

#include <charconv>

#include "common/hmac.hpp"

namespace kg::web {
namespace {

std::string hmac_hex(const std::string& secret, const std::string& message) {
    const auto digest = hmac_sha256(secret, message);
    std::string hex;
    hex.reserve(digest.size() * 2);
    for (const unsigned char c : digest) hex += fmt::format("{:02x}", c);
    return hex;
}

// Constant time: the signature must not leak through response timing.
bool same(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

}  // namespace

std::string sign_viewer_token(const std::string& secret, const std::string& camera, std::int64_t expires) {
    return fmt::format("{}.{}", expires, hmac_hex(secret, fmt::format("{}:{}", camera, expires)));
}

TokenCheck check_viewer_token(const std::string& secret, const std::string& camera, const std::string& token,
                              std::int64_t now, std::int64_t* expires_out) {
    if (token.empty()) return TokenCheck::missing;
    const auto dot = token.find('.');
    if (dot == std::string::npos || dot == 0 || token.size() - dot - 1 != 64) return TokenCheck::malformed;
    std::int64_t expires = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + dot, expires);
    if (ec != std::errc() || end != token.data() + dot) return TokenCheck::malformed;
    // Hex in either case: .NET's Convert.ToHexString and Java's printHexBinary write capitals, and a
    // parents' app signing with them had every viewer refused. (Lower-cased whatever it holds: a
    // character that is not hex fails the comparison all the same.)
    std::string given = token.substr(dot + 1);
    for (auto& c : given) {
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    }
    // The signature is checked before the expiry, so a forged token never learns whether its
    // expiry would have passed.
    const bool for_camera = same(given, hmac_hex(secret, fmt::format("{}:{}", camera, expires)));
    const bool for_site = same(given, hmac_hex(secret, fmt::format("*:{}", expires)));
    if (!for_camera && !for_site) return TokenCheck::bad_signature;
    if (expires < now) return TokenCheck::expired;
    if (expires_out != nullptr) *expires_out = expires;
    return TokenCheck::ok;
}

const char* to_string(TokenCheck check) {
    switch (check) {
        case TokenCheck::ok:
            return "ok";
        case TokenCheck::missing:
            return "a viewer token is required";
        case TokenCheck::malformed:
            return "the viewer token is malformed";
        case TokenCheck::expired:
            return "the viewer token has expired";
        case TokenCheck::bad_signature:
            return "the viewer token's signature is wrong";
    }
    return "?";
}

}  // namespace kg::web
