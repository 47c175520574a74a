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
    const auto login = [](const char* url) { return LoginGate::login_of(url); };
    const auto nvr = login("rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101");
    EXPECT_FALSE(nvr.empty());
    EXPECT_EQ(login("rtsp://admin:pw@192.168.1.64/Streaming/Channels/201"), nvr)
        << "the scheme's port when the URL names none: another channel of the same recorder";
    EXPECT_EQ(login("rtsp://admin:pw@192.168.1.64:0554/ch3"), nvr);
    EXPECT_EQ(login("RTSP://admin:pw@192.168.1.64/cam?x=1"), nvr);
    EXPECT_NE(login("rtsp://admin:other@192.168.1.64/ch1"), nvr) << "a mended password";
    EXPECT_NE(login("rtsp://Admin:pw@192.168.1.64/ch1"), nvr) << "a user's case is the camera's to judge";
    EXPECT_NE(login("rtsp://admin:pw@192.168.1.64:555/ch1"), nvr)
        << "another port: behind one router's address, another camera";
    // Written otherwise, sent the same by FFmpeg: one login.
    EXPECT_EQ(login("rtsp://admin:Wr%40ng@10.0.0.2/a"), login("rtsp://admin:Wr@ng@10.0.0.2/b"));
    EXPECT_EQ(login("rtsp://admin:@10.0.0.2/a"), login("rtsp://admin@10.0.0.2/b"));
    EXPECT_NE(login("rtsp://a:b:c@10.0.0.2/"), login("rtsp://a:b@10.0.0.2/")) << "no two logins share a key";
    EXPECT_EQ(login("http://u:p@[fe80::1]:8080/mjpg"), login("http://u:p@[FE80::1]:8080/other"));
    EXPECT_NE(login("http://u:p@[fe80::1]/mjpg"), login("http://u:p@[fe80::1]:8080/mjpg"));
    // No user in the authority: a login of its own, the URL (a password in the path or query, as
    // XMEye's and Foscam's take it, is still tried on the refused schedule).
    EXPECT_EQ(login("rtsp://192.168.1.64/user=admin&password=x&channel=1"),
              "url rtsp://192.168.1.64/user=admin&password=x&channel=1");
    EXPECT_NE(login("http://10.0.0.3/videostream.cgi?user=admin&pwd=x"),
              login("http://10.0.0.3/snapshot.cgi"));
    EXPECT_EQ(login("rtsp://10.0.0.2/a@b"), "url rtsp://10.0.0.2/a@b") << "an @ in the path is not a user";
    EXPECT_EQ(login("file:///srv/clips/kitchen.mp4"), "");
    EXPECT_EQ(login("/dev/video0"), "");
}

TEST(LoginGate, TheChannelsOfALoginNotYetKnownTakeTurnsUntilOneIsAccepted) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(first);
    const auto second = wait_of(gate.enter(login, "ch2", t0));
    ASSERT_TRUE(second) << "the second channel waits for the first's answer";
    EXPECT_EQ(second->until, t0 + LoginGate::kAskAgain);
    EXPECT_FALSE(second->refused_until);
    EXPECT_TRUE(pass_of(gate.enter("admin:pw@other:554", "cam", t0))) << "another login does not wait";

    first->accepted();
    EXPECT_TRUE(pass_of(gate.enter(login, "ch2", t0 + 1s)));
    EXPECT_TRUE(pass_of(gate.enter(login, "ch3", t0 + 1s))) << "a login known to work: every channel at once";
    EXPECT_TRUE(pass_of(gate.enter("", "file", t0))) << "no login: no turns";
}

TEST(LoginGate, TurnsGoInTheOrderTheCamerasAskedAndATryWithoutAnAnswerIsTheirCause) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(first);
    ASSERT_TRUE(wait_of(gate.enter(login, "ch2", t0 + 100ms)));
    ASSERT_TRUE(wait_of(gate.enter(login, "ch3", t0 + 200ms)));
    first->unanswered(kg::ingest::FailureCause::unreachable, "no answer within 10000 ms while opening");
    // ch3 asks first now, but ch2 asked before it.
    const auto third = wait_of(gate.enter(login, "ch3", t0 + 300ms));
    ASSERT_TRUE(third);
    ASSERT_TRUE(third->unanswered);
    EXPECT_EQ(third->unanswered->camera, "ch1");
    EXPECT_EQ(third->unanswered->cause, kg::ingest::FailureCause::unreachable);
    EXPECT_EQ(third->unanswered->number, 1u);
    auto second = pass_of(gate.enter(login, "ch2", t0 + 400ms));
    ASSERT_TRUE(second);
    // The turn passed on says the try before it went unanswered: the cause of the camera that
    // holds it while it tries (the recorder may not answer it either).
    ASSERT_TRUE(second->after_unanswered());
    EXPECT_EQ(second->after_unanswered()->camera, "ch1");
    EXPECT_EQ(second->after_unanswered()->number, 1u);
    // A pass that goes untold (stopped) gives the turn on; one moved keeps it.
    LoginGate::Pass moved = std::move(*second);
    second.reset();
    EXPECT_TRUE(wait_of(gate.enter(login, "ch3", t0 + 500ms)));
    { LoginGate::Pass gone = std::move(moved); }
    auto third_turn = pass_of(gate.enter(login, "ch3", t0 + 600ms));
    ASSERT_TRUE(third_turn);
    EXPECT_EQ(third_turn->after_unanswered()->camera, "ch1") << "ch2 gave its turn on without an answer";
    third_turn->accepted();
    auto again = pass_of(gate.enter(login, "ch1", t0 + 700ms));
    ASSERT_TRUE(again);
    EXPECT_FALSE(again->after_unanswered()) << "the login works: nothing unanswered to say";
}

TEST(LoginGate, ACameraThatStoppedAskingLeavesTheQueue) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(wait_of(gate.enter(login, "gone", t0)));  // then stopped, reloaded away
    first.reset();
    EXPECT_TRUE(wait_of(gate.enter(login, "ch3", t0 + 1s))) << "'gone' asked first, a moment ago";
    EXPECT_TRUE(pass_of(gate.enter(login, "ch3", t0 + 3s))) << "'gone' has not asked for 3 s";
}

TEST(LoginGate, ARefusedLoginIsTriedAgainAfterOneTwoFourEightThenFifteenMinutes) {
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
        EXPECT_FALSE(refusal.camera_only);
        // Until then it does not try, however often it asks, and the wait is one wait.
        for (const auto ask : {now + 1s, now + wait - 1s}) {
            const auto w = wait_of(gate.enter(login, "ch1", ask));
            ASSERT_TRUE(w);
            EXPECT_EQ(w->until, now + wait);
            ASSERT_TRUE(w->refused_until);
            EXPECT_EQ(*w->refused_until, now + wait);
            EXPECT_EQ(w->refusals, in_a_row);
            EXPECT_EQ(w->refused, "ch1");
        }
        now += wait;
    }
    // A mended password is another login: tried at once.
    EXPECT_TRUE(pass_of(gate.enter("admin:right@nvr:554", "ch2", now - 1s)));
    // Accepted at last: the count starts again.
    auto pass = pass_of(gate.enter(login, "ch1", now));
    ASSERT_TRUE(pass);
    pass->accepted();
    EXPECT_TRUE(pass_of(gate.enter(login, "ch2", now)));
}

TEST(LoginGate, TheCameraRefusedTriesLastWhenTheWaitEnds) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch5", t0));
    ASSERT_TRUE(first);
    ASSERT_TRUE(wait_of(gate.enter(login, "ch1", t0 + 100ms)));
    first->refused(t0 + 200ms);
    // All wake at the wait's end; the one refused asks first, and waits for the others.
    const auto end = t0 + 200ms + 1min;
    EXPECT_TRUE(wait_of(gate.enter(login, "ch5", end)));
    EXPECT_TRUE(pass_of(gate.enter(login, "ch1", end + 10ms)));
}

TEST(LoginGate, AChannelTheUserMayNotViewWaitsAloneAndTheOthersGoOn) {
    // A 403 (Hikvision's per-channel live view rights): the user and password were taken. Before,
    // it held back every channel of the login, streaming ones too, for up to 15 minutes a round.
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto forbidden = pass_of(gate.enter(login, "ch5", t0));
    ASSERT_TRUE(forbidden);
    ASSERT_TRUE(wait_of(gate.enter(login, "ch1", t0)));
    const auto refusal = forbidden->refused(t0 + 1s, /*forbidden=*/true);
    EXPECT_TRUE(refusal.camera_only);
    EXPECT_EQ(refusal.next_try, t0 + 1s + 1min);
    auto ch1 = pass_of(gate.enter(login, "ch1", t0 + 1s));
    ASSERT_TRUE(ch1) << "the next channel tries at once";
    ch1->accepted();
    const auto held = wait_of(gate.enter(login, "ch5", t0 + 30s));
    ASSERT_TRUE(held);
    EXPECT_TRUE(held->camera_only);
    EXPECT_EQ(held->until, t0 + 1s + 1min);
    EXPECT_TRUE(pass_of(gate.enter(login, "ch2", t0 + 30s)));
    // Its own schedule: 1, 2, ... minutes.
    auto again = pass_of(gate.enter(login, "ch5", t0 + 1s + 1min));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->refused(t0 + 2min, true).next_try, t0 + 2min + 2min);
    EXPECT_TRUE(pass_of(gate.enter(login, "ch1", t0 + 3min)));
}

TEST(LoginGate, OneCameraRefusedOfALoginThatWorksWaitsAloneAndASecondMakesItTheLogins) {
    LoginGate gate;
    const std::string login = "admin:pw@nvr:554";
    auto first = pass_of(gate.enter(login, "ch1", t0));
    ASSERT_TRUE(first);
    first->accepted();
    // A 401 on one channel (a path some cameras answer 401 for): that channel alone, again and again.
    for (const auto& [at, wait] : {std::pair{1h, 1min}, std::pair{2h, 2min}}) {
        auto odd = pass_of(gate.enter(login, "odd", t0 + at));
        ASSERT_TRUE(odd);
        const auto refusal = odd->refused(t0 + at);
        EXPECT_TRUE(refusal.camera_only);
        EXPECT_EQ(refusal.next_try, t0 + at + wait);
        auto other = pass_of(gate.enter(login, "ch1", t0 + at + 1s));
        ASSERT_TRUE(other) << "the others go on";
        other->accepted();
    }
    // The password changed on the recorder while the channels streamed: they reconnect at once (the
    // login was known to work) and are refused each. The second camera refused makes it the login's,
    // one refusal: tried again in a minute, as docs/config.md says; the third, let in before, adds none.
    auto a = pass_of(gate.enter(login, "ch1", t0 + 3h));
    auto b = pass_of(gate.enter(login, "ch2", t0 + 3h));
    auto c = pass_of(gate.enter(login, "ch3", t0 + 3h));
    ASSERT_TRUE(a && b && c);
    const auto after_a = a->refused(t0 + 3h + 1s);
    EXPECT_TRUE(after_a.camera_only) << "'odd' was refused before, and a camera connected since";
    const auto after_b = b->refused(t0 + 3h + 2s);
    EXPECT_FALSE(after_b.camera_only);
    EXPECT_EQ(after_b.in_a_row, 1);
    EXPECT_EQ(after_b.next_try, t0 + 3h + 2s + 1min);
    const auto after_c = c->refused(t0 + 3h + 3s);
    EXPECT_EQ(after_c.in_a_row, 1);
    EXPECT_EQ(after_c.next_try, t0 + 3h + 2s + 1min);
    const auto w = wait_of(gate.enter(login, "ch4", t0 + 3h + 30s));
    ASSERT_TRUE(w);
    EXPECT_EQ(w->until, t0 + 3h + 2s + 1min);
    EXPECT_EQ(w->refused, "ch2");
}
