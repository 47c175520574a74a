#include "common/env.hpp"

#include <cstdlib>
#include <fstream>

namespace kg {

bool expand_env(const std::string& text, std::string& out, std::string& missing,
                std::set<std::string>* names) {
    std::string result;
    std::size_t pos = 0;
    for (;;) {
        const auto open = text.find("${", pos);
        if (open == std::string::npos) break;
        const auto close = text.find('}', open);
        if (close == std::string::npos) break;
        const auto name = text.substr(open + 2, close - open - 2);
        if (names != nullptr) names->insert(name);
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

std::optional<std::map<std::string, std::string>> process_environment(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
    if (!in) return std::nullopt;
    std::map<std::string, std::string> vars;
    std::string entry;
    while (std::getline(in, entry, '\0')) {
        const auto eq = entry.find('=');
        if (eq != std::string::npos) vars.emplace(entry.substr(0, eq), entry.substr(eq + 1));
    }
    if (in.bad()) return std::nullopt;
    return vars;
}

}  // namespace kg
