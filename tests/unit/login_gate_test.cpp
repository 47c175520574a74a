// The logins the cameras share (LoginGate): the channels of one recorder take turns while their
// login is not known to work, and a refused login waits 1, 2, 4, 8, then 15 minutes.

#include "ingest/login_gate.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <variant>

namespace {

using kg::ingest::LoginGate;
using namespace std::chrono_literals;

const auto t0 = std::chrono::steady_clock::time_point{} + 1000h;

// The pass `entry` holds; fails the test when it is a wait.
std::optional<LoginGate::Pass> pass_of(std::variant<LoginGate::Pass, LoginGate::Wait> entry) {
    if (auto* pass = std::get_if<LoginGate::Pass>(&entry)) return std::move(*pass);
    return std::nullopt;
}

std::optional<LoginGate::Wait> wait_of(const std::variant<LoginGate::Pass, LoginGate::Wait>& entry) {
    if (const auto* wait = std::get_if<LoginGate::Wait>(&entry)) return *wait;
    return std::nullopt;
}

}  // namespace

TEST(LoginGate, ALoginIsItsUserAndPasswordAtItsHostAndPort) {
    const auto nvr = LoginGate::login_of("rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101");
    EXPECT_EQ(nvr, "admin:pw@192.168.1.64:554");
    EXPECT_EQ(LoginGate::login_of("rtsp://admin:pw@192.168.1.64/Streaming/Channels/201"), nvr)
        << "the scheme's port when the URL names none: another channel of the same recorder";
    EXPECT_EQ(LoginGate::login_of("RTSP://admin:pw@NVR.local/cam"), "admin:pw@nvr.local:554");
    EXPECT_NE(LoginGate::login_of("rtsp://admin:other@192.168.1.64/ch1"), nvr) << "a mended password";
    EXPECT_NE(LoginGate::login_of("rtsp://admin:pw@192.168.1.64:555/ch1"), nvr)
        << "another port: behind one router's address, another camera";
    EXPECT_EQ(LoginGate::login_of("rtsp://admin:p@ss@10.0.0.2/x?y=1"), "admin:p@ss@10.0.0.2:554");
    EXPECT_EQ(LoginGate::login_of("http://u:p@[fe80::1]:8080/mjpg"), "u:p@[fe80::1]:8080");
    EXPECT_EQ(LoginGate::login_of("http://u:p@[fe80::1]/mjpg"), "u:p@[fe80::1]:80");
    EXPECT_EQ(LoginGate::login_of("rtsp://192.168.1.64/ch1"), "") << "no user: no account to lock";
    EXPECT_EQ(LoginGate::login_of("rtsp://10.0.0.2/a@b"), "") << "an @ in the path is not a user";
    EXPECT_EQ(LoginGate::login_of("file:///srv/clips/kitchen.mp4"), "");
    EXPECT_EQ(LoginGate::login_of("/dev/video0"), "");
}

TEST(LoginGate, TheChannelsOfALoginNotYetKnownTakeTurnsUntilOneIsAccepted) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(first);
    const auto second = wait_of(gate.enter(login, "ch2", t0));
    ASSERT_TRUE(second) << "the second channel waits for the first's answer";
    EXPECT_EQ(second->until, t0 + LoginGate::kAskAgain);
    EXPECT_EQ(second->refusals, 0);
    EXPECT_TRUE(pass_of(gate.enter("admin:pw@other:554", "cam", t0))) << "another login does not wait";

    first->accepted();
    EXPECT_TRUE(pass_of(gate.enter(login, "ch2", t0 + 1s)));
    EXPECT_TRUE(pass_of(gate.enter(login, "ch3", t0 + 1s))) << "a login known to work: every channel at once";
    EXPECT_TRUE(pass_of(gate.enter("", "file", t0))) << "no login: no turns";
}

TEST(LoginGate, ATryWithoutAnAnswerAboutTheLoginGivesTheNextChannelItsTurn) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    {
        auto first = pass_of(gate.enter(login, "ch1", t0));
        ASSERT_TRUE(first);
        ASSERT_TRUE(wait_of(gate.enter(login, "ch2", t0)));
        // No such host, no answer, stopped: the pass goes without a word.
    }
    auto second = pass_of(gate.enter(login, "ch2", t0 + 1s));
    ASSERT_TRUE(second);
    EXPECT_TRUE(wait_of(gate.enter(login, "ch3", t0 + 1s))) << "still one at a time: nothing is known yet";
    // A pass moved keeps the turn; the one moved from gives nothing back.
    LoginGate::Pass moved = std::move(*second);
    second.reset();
    EXPECT_TRUE(wait_of(gate.enter(login, "ch3", t0 + 2s)));
    moved.accepted();
    EXPECT_TRUE(pass_of(gate.enter(login, "ch3", t0 + 2s)));
}

TEST(LoginGate, ARefusedLoginIsTriedAgainByOneChannelAfterOneTwoFourEightThenFifteenMinutes) {
    LoginGate gate;
    const std::string login = "admin:wrong@nvr:554";
    auto now = t0;
    const std::chrono::minutes waits[] = {1min, 2min, 4min, 8min, 15min, 15min};
    int in_a_row = 0;
    for (const auto wait : waits) {
        auto pass = pass_of(gate.enter(login, "ch1", now));
        ASSERT_TRUE(pass) << "tried again after " << in_a_row << " refusals";
        const auto refusal = pass->refused(now);
        EXPECT_EQ(refusal.in_a_row, ++in_a_row);
        EXPECT_EQ(refusal.next_try, now + wait);
        // Until then no channel of the login tries, the one refused neither.
        for (const auto* camera : {"ch1", "ch2"}) {
            const auto w = wait_of(gate.enter(login, camera, now + wait - 1s));
            ASSERT_TRUE(w) << camera;
            EXPECT_EQ(w->until, now + wait);
            EXPECT_EQ(w->refusals, in_a_row);
            EXPECT_EQ(w->refused, "ch1");
        }
        now += wait;
    }
    // A mended password is another login: tried at once.
    EXPECT_TRUE(pass_of(gate.enter("admin:right@nvr:554", "ch2", now - 1s)));
    // Accepted at last: the count starts again.
    auto pass = pass_of(gate.enter(login, "ch2", now));
    ASSERT_TRUE(pass);
    pass->accepted();
    auto again = pass_of(gate.enter(login, "ch3", now));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->refused(now).next_try, now + 1min);
}

TEST(LoginGate, ChannelsRefusedTogetherDoNotShortenEachOthersWait) {
    // The password changed on the recorder while its channels streamed: they reconnect at once (the
    // login was known to work) and are refused each; the longest wait holds.
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(first);
    first->accepted();
    auto a = pass_of(gate.enter(login, "ch1", t0 + 1h));
    auto b = pass_of(gate.enter(login, "ch2", t0 + 1h));
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->refused(t0 + 1h).next_try, t0 + 1h + 1min);
    const auto later = b->refused(t0 + 1h + 10s);
    EXPECT_EQ(later.in_a_row, 2);
    EXPECT_EQ(later.next_try, t0 + 1h + 10s + 2min);
    const auto w = wait_of(gate.enter(login, "ch1", t0 + 1h + 1min));
    ASSERT_TRUE(w);
    EXPECT_EQ(w->until, t0 + 1h + 10s + 2min);
    EXPECT_EQ(w->refused, "ch2");
}
