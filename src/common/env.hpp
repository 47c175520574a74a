#pragma once
// `${NAME}` references to the environment inside configuration strings, so that secrets and
// machine-specific paths stay out of the files.

#include <string>

namespace kg {

// Replaces every ${NAME} in `text` with the variable's value. Returns false, with the first unset
// variable's name in `missing`, if one is not set.
bool expand_env(const std::string& text, std::string& out, std::string& missing);

}  // namespace kg
