#pragma once
// The logins the cameras make, shared between them. A camera or recorder locks the account (or the
// address it is tried from) after a few refused logins in a row (Hikvision, Dahua: 5 to 7, for
// about 30 minutes), counted over all its channels: eight channels of one NVR with a wrong
// password, each tried again on its own, locked it within the first minute, the installer locked
// out of its page too. So the cameras that log in to the same host and port as the same user with
// the same password take turns while that login is not known to work: one tries, the others wait
// for its answer, in the order they asked; a refused login is tried again after 1, 2, 4, 8, then
// every 15 minutes, by one of them, the one refused last going last.
// Once a login is known to work, a camera refused alone (a 403: a channel the user may not view; or
// one 401 among channels that stream) waits on its own, on the same schedule, and the others go on;
// a second camera refused makes it the login's again (the password was changed on the recorder).
// Owned by the process, not by one run of the configuration: a reload with the same password does
// not try it again at once; a mended password is another login, tried at once.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "ingest/failure_cause.hpp"

namespace kg::ingest {

class LoginGate {
public:
    using SteadyPoint = std::chrono::steady_clock::time_point;
    // The wait after a refused login, doubling from the first to the longest.
    static constexpr std::chrono::milliseconds kRefusedFirst{std::chrono::minutes(1)};
    static constexpr std::chrono::milliseconds kRefusedMax{std::chrono::minutes(15)};
    // How often a camera asks again while another camera's try of its login is under way. One that
    // has not asked for three times this long has left the queue (stopped, or reloaded away).
    static constexpr std::chrono::milliseconds kAskAgain{500};

    // The login a URL makes: its user and password (percent-decoded, as FFmpeg sends them) at its
    // host and port (the scheme's port when it names none). A network URL without a user (none, or
    // a password in its path or query, as some DVRs take it) is a login of its own, the whole URL.
    // Empty for a file or a device.
    static std::string login_of(const std::string& url);

    // A try of a login that ended without an answer about it (no such host, no answer): what the
    // cameras waiting for their first try of that login say meanwhile.
    struct Unanswered {
        std::string camera;
        FailureCause cause = FailureCause::error;
        std::string text;
        std::uint64_t number = 0;  // counts the login's unanswered tries: a new one is said anew
    };

    // A try of a login that may go ahead. Tell it how the try went: accepted() once the camera
    // answered past its login, refused() at a 401/403, unanswered() when the try ended otherwise
    // (then the next camera may try); a pass that goes untold (stopped) gives its turn on too.
    class Pass {
    public:
        Pass() = default;  // a URL without a login: nothing to tell
        Pass(Pass&& other) noexcept;
        Pass& operator=(Pass&& other) noexcept;
        Pass(const Pass&) = delete;
        Pass& operator=(const Pass&) = delete;
        ~Pass();

        void accepted();
        struct Refusal {
            SteadyPoint next_try{};    // when this camera tries again at the earliest
            int in_a_row = 0;          // refused logins in a row, this one included
            bool camera_only = false;  // this camera alone waits; the login's other cameras go on
        };
        // `forbidden`: a 403, the user and password taken but not for this stream.
        Refusal refused(SteadyPoint now, bool forbidden = false);
        void unanswered(FailureCause cause, std::string text);
        // The login's last try without an answer, another camera's, when this pass is that try's
        // turn passed on: the recorder may not answer this one either.
        const std::optional<Unanswered>& after_unanswered() const { return after_unanswered_; }

    private:
        friend class LoginGate;
        Pass(LoginGate* gate, std::string login, std::string camera, bool turn)
            : gate_(gate), login_(std::move(login)), camera_(std::move(camera)), turn_(turn) {}
        void release();

        LoginGate* gate_ = nullptr;  // null once told how the try went
        std::string login_, camera_;
        bool turn_ = false;  // this try is the one the other cameras of its login wait for
        std::optional<Unanswered> after_unanswered_;
    };

    // Another camera's try of the login is under way, or a refused wait runs.
    struct Wait {
        SteadyPoint until;  // ask again then
        // While refused (the login, or this camera alone): when the wait ends; the same for every
        // ask of one wait. None: waiting for another camera's try.
        std::optional<SteadyPoint> refused_until;
        int refusals = 0;     // refused logins in a row
        std::string refused;  // the camera whose try was refused last
        bool camera_only = false;
        std::optional<Unanswered> unanswered;  // the login's last try without an answer, if any
    };

    // Asks, for camera `camera`, to try `login` (login_of its URL) at `now`.
    std::variant<Pass, Wait> enter(const std::string& login, const std::string& camera, SteadyPoint now);

private:
    struct Hold {  // a camera refused on its own
        int refusals = 0;
        SteadyPoint next_try{};
    };
    struct Login {
        enum class Known { no, accepted, refused } known = Known::no;
        std::optional<std::string> trying;  // the camera whose try the others wait for
        int refusals = 0;
        SteadyPoint next_try{};
        std::string refused;
        std::set<std::string> refused_alone;  // refused while the login was known to work
        std::map<std::string, Hold> holds;
        // The cameras asking for a turn, in the order they first asked, with their last ask.
        std::vector<std::pair<std::string, SteadyPoint>> queue;
        std::optional<Unanswered> unanswered;
        std::uint64_t unanswered_count = 0;
    };
    static void ask(Login& l, const std::string& camera, SteadyPoint now);
    static Pass::Refusal hold(Login& l, const std::string& camera, SteadyPoint now);
    void accepted(const std::string& login, const std::string& camera, bool turn);
    Pass::Refusal refused(const std::string& login, const std::string& camera, bool turn, bool forbidden,
                          SteadyPoint now);
    void unanswered(const std::string& login, Unanswered u);
    void release(const std::string& login);

    std::mutex mutex_;
    std::map<std::string, Login> logins_;
};

}  // namespace kg::ingest
