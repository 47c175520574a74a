#pragma once
// Signed, expiring stream URLs, as media servers and CDNs do: a school's parents' app (which knows
// the secret from the gateway's config) hands each parent a URL with `?token=<expiry>.<signature>`,
// where the signature is HMAC-SHA256(secret, "<camera>:<expiry>") in hex. A token signed for the
// camera "*" opens every public camera of the site (the parents' page). Expiry is Unix seconds.

#include <cstdint>
#include <string>

namespace kg::web {

enum class TokenCheck { ok, missing, malformed, expired, bad_signature };

std::string sign_viewer_token(const std::string& secret, const std::string& camera, std::int64_t expires);
// On ok, `expires` (when given) receives the token's expiry: a stream opened with it ends then.
TokenCheck check_viewer_token(const std::string& secret, const std::string& camera, const std::string& token,
                              std::int64_t now, std::int64_t* expires = nullptr);
const char* to_string(TokenCheck check);

}  // namespace kg::web
