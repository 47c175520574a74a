#pragma once
// URLs as logs and error messages may show them.

#include <string>

namespace kg {

// A password in the URL (rtsp://user:password@host/...) becomes "***"; the user name stays, so that
// an installer still sees which account was asked for. The last '@' of the authority ends the user
// info (a password may itself hold an '@'). A password holding '/', '?' or '#' unencoded (which no
// client can use: the host seems to end there) is hidden too: with an account or a port in the
// authority and an '@' after it, everything up to the URL's last '@' goes (more than the password
// may go, an '@' in a path or query with it, never less).
std::string without_password(const std::string& url);

// Whether an '@' follows the authority of a URL whose authority holds a ':' (an account or a port):
// it may end a password holding '/', '?' or '#' unencoded (or belong to a path).
bool at_after_authority(const std::string& url);

// Whether the host of a URL's authority (what follows the "://" up to the first '/', '?' or '#')
// seems to end inside its user information: a ':' before that end, not followed by a port, and an
// '@' after it, as in rtsp://admin:pa/ss@host/ (a password to percent-encode).
bool account_breaks_authority(const std::string& url);

// Whether a camera's URL names a V4L2 device: `v4l2://...`, `/dev/videoN`, or the name a USB camera
// keeps whichever port it is in, `/dev/v4l/by-id/...`. Ingest opens it with FFmpeg's V4L2 input;
// the configuration's checks ask the same question of it.
bool names_v4l2_device(const std::string& url);

}  // namespace kg
