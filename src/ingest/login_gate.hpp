#pragma once
// The logins the cameras make, shared between them. A camera or recorder locks the account (or the
// address it is tried from) after a few refused logins in a row (Hikvision, Dahua: 5 to 7, for
// about 30 minutes), counted over all its channels: eight channels of one NVR with a wrong
// password, each tried again on its own, locked it within the first minute, the installer locked
// out of its page too. So the cameras that log in to the same host and port as the same user with
// the same password take turns while that login is not known to work: one tries, the others wait
// for its answer; a refused login is tried again after 1, 2, 4, 8, then every 15 minutes, by one
// of them. Owned by the process, not by one run of the configuration: a reload with the same
// password does not try again at once; a mended password is another login, tried at once.

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <variant>

namespace kg::ingest {

class LoginGate {
public:
    using SteadyPoint = std::chrono::steady_clock::time_point;
    // The wait after a refused login, doubling from the first to the longest.
    static constexpr std::chrono::milliseconds kRefusedFirst{std::chrono::minutes(1)};
    static constexpr std::chrono::milliseconds kRefusedMax{std::chrono::minutes(15)};
    // How often a camera asks again while another camera's try of its login is under way.
    static constexpr std::chrono::milliseconds kAskAgain{500};

    // The login a URL makes: its user and password at its host and port (the scheme's port when it
    // names none). Empty for a URL without a user (no account to lock), a file or a device.
    static std::string login_of(const std::string& url);

    // A try of a login that may go ahead. Tell it how the try went: accepted() once the camera
    // answered past its login, refused() at a 401/403; a try that ended otherwise (no answer) says
    // nothing about the password, and the next camera may try.
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
            SteadyPoint next_try{};  // when the login is tried again (by one of its cameras)
            int in_a_row = 0;        // refused logins in a row, this one included
        };
        Refusal refused(SteadyPoint now);

    private:
        friend class LoginGate;
        Pass(LoginGate* gate, std::string login, std::string camera, bool turn)
            : gate_(gate), login_(std::move(login)), camera_(std::move(camera)), turn_(turn) {}
        void release();

        LoginGate* gate_ = nullptr;  // null once told how the try went
        std::string login_, camera_;
        bool turn_ = false;  // this try is the one the other cameras of its login wait for
    };

    // Another camera's try of the login is under way, or the login was refused and its wait runs.
    struct Wait {
        SteadyPoint until;    // ask again then
        int refusals = 0;     // refused logins in a row; 0: the login's first try is under way
        std::string refused;  // the camera whose try was refused last
    };

    // Asks, for camera `camera`, to try `login` (login_of its URL) at `now`.
    std::variant<Pass, Wait> enter(const std::string& login, const std::string& camera, SteadyPoint now);

private:
    struct Login {
        enum class Known { no, accepted, refused } known = Known::no;
        bool trying = false;  // one camera's try is under way; the others wait for it
        int refusals = 0;
        SteadyPoint next_try{};
        std::string refused;
    };
    void accepted(const std::string& login, bool turn);
    Pass::Refusal refused(const std::string& login, const std::string& camera, bool turn, SteadyPoint now);
    void release(const std::string& login);

    std::mutex mutex_;
    std::map<std::string, Login> logins_;
};

}  // namespace kg::ingest
