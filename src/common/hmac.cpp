#include "common/hmac.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace kg {

std::string hmac_sha256(const std::string& secret, const std::string& message) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
    return {reinterpret_cast<const char*>(digest), length};
}

}  // namespace kg
