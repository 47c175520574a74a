// The memory overflow the outbox falls back to while its store fails: its two limits (messages and
// bytes) and the rule it shares with the store, that a message only makes room by dropping older
// messages no more important than itself. docs/mqtt.md promises both; a queue that dropped an
// alert for a roll-up, or grew past its limits on a box whose disk stays full, would break them.
#include "outbox/overflow.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using kg::outbox::Message;
using kg::outbox::Overflow;
using kg::outbox::Priority;

namespace {

// `bytes` counts the topic too, as the overflow does: topic "t/<n>" plus a payload to make it up.
Message message(int n, Priority priority, std::size_t bytes = 16) {
    Message m;
    m.topic = "t/" + std::to_string(n);
    m.payload.assign(bytes - m.topic.size(), 'x');
    m.priority = priority;
    return m;
}

// The topics in the order the overflow would send them, emptying it.
std::vector<std::string> drain(Overflow& overflow) {
    std::vector<std::string> topics;
    while (auto m = overflow.front()) {
        topics.push_back(m->topic);
        EXPECT_TRUE(overflow.pop(m->seq));
    }
    return topics;
}

}  // namespace

TEST(Overflow, KeepsMessagesOldestFirstUnderNumbersOfTheirOwn) {
    Overflow overflow({.max_messages = 10, .max_bytes = 1000});
    for (int i = 1; i <= 3; ++i) EXPECT_TRUE(overflow.push(message(i, Priority::alert)).kept);
    const auto first = overflow.front();
    ASSERT_TRUE(first);
    EXPECT_LT(first->seq, 0) << "stored messages have positive numbers; the overflow's must not collide";
    EXPECT_FALSE(overflow.pop(first->seq - 1)) << "only the front message, by its number, is removed";
    EXPECT_EQ(overflow.size(), 3u);
    EXPECT_EQ(drain(overflow), (std::vector<std::string>{"t/1", "t/2", "t/3"}));
    EXPECT_EQ(overflow.dropped_total(), 0u);
}

TEST(Overflow, AtItsMessageLimitDropsTheOldestOfTheLeastImportantFirst) {
    Overflow overflow({.max_messages = 4, .max_bytes = 1000});
    overflow.push(message(1, Priority::telemetry));
    overflow.push(message(2, Priority::alert));
    overflow.push(message(3, Priority::evidence));
    overflow.push(message(4, Priority::telemetry));
    // Full. An alert makes room with the oldest roll-up, not with the evidence or the alert.
    const auto pushed = overflow.push(message(5, Priority::alert));
    EXPECT_TRUE(pushed.kept);
    EXPECT_EQ(pushed.dropped, 1u);
    EXPECT_EQ(overflow.size(), 4u);
    EXPECT_EQ(overflow.dropped_total(), 1u);
    EXPECT_EQ(drain(overflow), (std::vector<std::string>{"t/2", "t/3", "t/4", "t/5"}));
}

TEST(Overflow, AMessageNeverDropsAMoreImportantOneAndIsRefusedInstead) {
    Overflow overflow({.max_messages = 3, .max_bytes = 1000});
    for (int i = 1; i <= 3; ++i) overflow.push(message(i, Priority::alert));
    const auto telemetry = overflow.push(message(4, Priority::telemetry));
    EXPECT_FALSE(telemetry.kept);
    EXPECT_EQ(telemetry.dropped, 0u);
    const auto evidence = overflow.push(message(5, Priority::evidence));
    EXPECT_FALSE(evidence.kept);
    EXPECT_EQ(overflow.dropped_total(), 2u) << "a refused message counts as lost";
    // An alert among alerts drops the oldest alert: the newest state of the kitchen is worth more.
    const auto alert = overflow.push(message(6, Priority::alert));
    EXPECT_TRUE(alert.kept);
    EXPECT_EQ(alert.dropped, 1u);
    EXPECT_EQ(drain(overflow), (std::vector<std::string>{"t/2", "t/3", "t/6"}));
}

TEST(Overflow, AtItsByteLimitDropsAsManyLessImportantMessagesAsTheNewOneNeeds) {
    Overflow overflow({.max_messages = 100, .max_bytes = 100});
    overflow.push(message(1, Priority::telemetry, 30));
    overflow.push(message(2, Priority::alert, 30));
    overflow.push(message(3, Priority::telemetry, 30));
    // 90 of 100 bytes held: 50 more need both roll-ups gone (90 - 60 + 50 = 80), not the alert.
    const auto pushed = overflow.push(message(4, Priority::evidence, 50));
    EXPECT_TRUE(pushed.kept);
    EXPECT_EQ(pushed.dropped, 2u);
    EXPECT_EQ(drain(overflow), (std::vector<std::string>{"t/2", "t/4"}));
}

TEST(Overflow, DecidesBeforeDroppingSoARefusedMessageCostsNothing) {
    Overflow overflow({.max_messages = 100, .max_bytes = 100});
    overflow.push(message(1, Priority::telemetry, 30));
    overflow.push(message(2, Priority::alert, 60));
    // 60 bytes need more room than the one roll-up can give (90 - 30 + 60 > 100): it is refused
    // and the roll-up it could not do without stays.
    const auto pushed = overflow.push(message(3, Priority::evidence, 60));
    EXPECT_FALSE(pushed.kept);
    EXPECT_EQ(pushed.dropped, 0u);
    EXPECT_EQ(drain(overflow), (std::vector<std::string>{"t/1", "t/2"}));
}

TEST(Overflow, AMessageLargerThanTheWholeLimitIsRefusedAndDropsNothing) {
    Overflow overflow({.max_messages = 100, .max_bytes = 100});
    overflow.push(message(1, Priority::replay, 20));
    const auto pushed = overflow.push(message(2, Priority::alert, 101));
    EXPECT_FALSE(pushed.kept);
    EXPECT_EQ(overflow.size(), 1u);
    EXPECT_EQ(overflow.dropped_total(), 1u);
}

TEST(Overflow, PoppingGivesBackTheBytesItHeld) {
    Overflow overflow({.max_messages = 100, .max_bytes = 100});
    overflow.push(message(1, Priority::alert, 60));
    ASSERT_TRUE(overflow.pop(overflow.front()->seq));
    // With the bytes of the sent message still counted, this alert would have to be refused.
    EXPECT_TRUE(overflow.push(message(2, Priority::alert, 100)).kept);
}
