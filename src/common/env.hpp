#pragma once
// `${NAME}` references to the environment inside configuration strings, so that secrets and
// machine-specific paths stay out of the files.

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <string>

namespace kg {

// Replaces every ${NAME} in `text` with the variable's value. Returns false, with the first unset
// variable's name in `missing`, if one is not set. The names met go into `names`, when given.
bool expand_env(const std::string& text, std::string& out, std::string& missing,
                std::set<std::string>* names = nullptr);

// The environment process `pid` started with (/proc/PID/environ), or nothing if it cannot be read
// (no such process, another user's).
std::optional<std::map<std::string, std::string>> process_environment(pid_t pid);

}  // namespace kg
