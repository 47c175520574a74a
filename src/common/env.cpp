#include "common/env.hpp"

#include <cstdlib>

namespace kg {

bool expand_env(const std::string& text, std::string& out, std::string& missing) {
    std::string result;
    std::size_t pos = 0;
    for (;;) {
        const auto open = text.find("${", pos);
        if (open == std::string::npos) break;
        const auto close = text.find('}', open);
        if (close == std::string::npos) break;
        const auto name = text.substr(open + 2, close - open - 2);
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) {
            missing = name;
            return false;
        }
        result += text.substr(pos, open - pos) + value;
        pos = close + 1;
    }
    out = result + text.substr(pos);
    return true;
}

}  // namespace kg
