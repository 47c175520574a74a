#pragma once
// URLs as logs and error messages may show them.

#include <string>

namespace kg {

// A password in the URL (rtsp://user:password@host/...) becomes "***"; the user name stays, so that
// an installer still sees which account was asked for. The last '@' of the authority ends the user
// info (a password may itself hold an '@').
std::string without_password(const std::string& url);

}  // namespace kg
