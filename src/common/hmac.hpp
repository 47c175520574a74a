#pragma once
// HMAC-SHA256, the signature both the parents' viewer tokens and the DingTalk robots use.

#include <string>

namespace kg {

// The 32 raw bytes of HMAC-SHA256(secret, message).
std::string hmac_sha256(const std::string& secret, const std::string& message);

}  // namespace kg
