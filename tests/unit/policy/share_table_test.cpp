// SPDX-License-Identifier: MIT
// Share tokens: what they grant, to whom, for how long, and what a wrong
// guess learns.
#include <algorithm>
#include <set>

#include <gtest/gtest.h>

#include "fakes/mock_syscalls.h"
#include "policy/share_table.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::NiceMock;
using ::testing::Return;
using Clock = ShareTable::Clock;
using Verdict = ShareTable::Verdict;

constexpr ClientId kSharer = 1;
constexpr BufferId kBuffer = 42;
constexpr uid_t kCamera = 1000;
constexpr uid_t kDisplay = 1001;

class ShareTokens : public ::testing::Test
{
protected:
    std::string add(ShareTable::Grant grant = {kSharer, kBuffer, std::nullopt, std::nullopt, false})
    {
        auto token = table_.add(grant);
        EXPECT_TRUE(token) << token.error();
        return token ? *token : std::string{};
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    ShareTable table_{syscalls_, 4};
    const Clock::time_point now_ = Clock::now();
};

TEST_F(ShareTokens, AreTwentyFourRandomBytesAndNeverRepeat)
{
    std::set<std::string> tokens;
    for (int i = 0; i < 4; ++i) {
        const std::string token = add({kSharer + static_cast<ClientId>(i), kBuffer, {}, {}, false});
        EXPECT_EQ(token.size(), kShareTokenSize);
        tokens.insert(token);
    }
    EXPECT_EQ(tokens.size(), 4u);
}

TEST_F(ShareTokens, GrantTheirBufferOnceUnlessReusable)
{
    const std::string once = add();
    const auto first = table_.redeem(once, kDisplay, now_);
    EXPECT_EQ(first.verdict, Verdict::kGranted);
    EXPECT_EQ(first.grant.buffer, kBuffer);
    EXPECT_EQ(first.grant.sharer, kSharer);
    EXPECT_EQ(table_.redeem(once, kDisplay, now_).verdict, Verdict::kUnknown) << "used up";

    const std::string reusable = add({kSharer, kBuffer, {}, {}, true});
    EXPECT_EQ(table_.redeem(reusable, kDisplay, now_).verdict, Verdict::kGranted);
    EXPECT_EQ(table_.redeem(reusable, kCamera, now_).verdict, Verdict::kGranted);
}

TEST_F(ShareTokens, ForOneUidRefuseAnyOtherAndStayForTheirUid)
{
    const std::string token = add({kSharer, kBuffer, kDisplay, {}, false});
    const auto refused = table_.redeem(token, kCamera, now_);
    EXPECT_EQ(refused.verdict, Verdict::kOtherUid);
    EXPECT_EQ(refused.grant.uid, kDisplay);
    EXPECT_EQ(table_.redeem(token, kDisplay, now_).verdict, Verdict::kGranted);
}

TEST_F(ShareTokens, ExpireAtTheirTimeToLive)
{
    const auto expires = now_ + std::chrono::seconds(5);
    const std::string token = add({kSharer, kBuffer, {}, expires, true});
    EXPECT_EQ(table_.redeem(token, kDisplay, expires - std::chrono::nanoseconds(1)).verdict, Verdict::kGranted);
    EXPECT_EQ(table_.redeem(token, kDisplay, expires).verdict, Verdict::kExpired);
    EXPECT_EQ(table_.redeem(token, kDisplay, now_).verdict, Verdict::kUnknown) << "an expired token is gone";
    EXPECT_EQ(table_.size(), 0u);
}

TEST_F(ShareTokens, DifferingInAnyOneBitAreUnknown)
{
    const std::string token = add({kSharer, kBuffer, {}, {}, true});
    for (std::size_t byte = 0; byte < token.size(); ++byte) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string guess = token;
            guess[byte] = static_cast<char>(guess[byte] ^ (1 << bit));
            ASSERT_EQ(table_.redeem(guess, kDisplay, now_).verdict, Verdict::kUnknown)
                << "byte " << byte << " bit " << bit;
        }
    }
    EXPECT_EQ(table_.redeem(token, kDisplay, now_).verdict, Verdict::kGranted)
        << "wrong guesses leave the token alone";
}

TEST_F(ShareTokens, OfAnotherLengthAreUnknown)
{
    const std::string token = add();
    EXPECT_EQ(table_.redeem(token.substr(0, 23), kDisplay, now_).verdict, Verdict::kUnknown);
    EXPECT_EQ(table_.redeem(token + "x", kDisplay, now_).verdict, Verdict::kUnknown);
    EXPECT_EQ(table_.redeem("", kDisplay, now_).verdict, Verdict::kUnknown);
}

TEST_F(ShareTokens, CanBeRevokedOnlyByTheirSharer)
{
    const std::string token = add();
    EXPECT_EQ(table_.revoke(token, kSharer + 1), -ENOENT);
    EXPECT_EQ(table_.revoke(token, kSharer), 0);
    EXPECT_EQ(table_.revoke(token, kSharer), -ENOENT);
    EXPECT_EQ(table_.redeem(token, kDisplay, now_).verdict, Verdict::kUnknown);
}

TEST_F(ShareTokens, DieWithTheirSharersConnection)
{
    const std::string mine = add();
    const std::string other = add({kSharer + 1, kBuffer, {}, {}, false});
    table_.forget_client(kSharer);
    EXPECT_EQ(table_.count_of(kSharer), 0u);
    EXPECT_EQ(table_.redeem(mine, kDisplay, now_).verdict, Verdict::kUnknown);
    EXPECT_EQ(table_.redeem(other, kDisplay, now_).verdict, Verdict::kGranted);
}

TEST_F(ShareTokens, AreLimitedPerClientAndPurgingDeadOnesMakesRoom)
{
    for (int i = 0; i < 4; ++i)
        add({kSharer, kBuffer + static_cast<BufferId>(i), {}, {}, false});
    EXPECT_EQ(table_.add({kSharer, kBuffer, {}, {}, false}).error(), -ENOSPC);
    EXPECT_TRUE(table_.add({kSharer + 1, kBuffer, {}, {}, false})) << "the limit is per client";

    // The buffers 42 and 43 were freed: their tokens lead nowhere.
    EXPECT_EQ(table_.purge(kSharer, [](const ShareTable::Grant &grant) { return grant.buffer < kBuffer + 2; }),
              2u);
    EXPECT_EQ(table_.count_of(kSharer), 2u);
    EXPECT_TRUE(table_.add({kSharer, kBuffer, {}, {}, false}));
}

TEST_F(ShareTokens, WithoutRandomnessAreNotMade)
{
    EXPECT_CALL(syscalls_, get_random(_)).WillOnce(Return(-ENOSYS));
    EXPECT_EQ(table_.add({kSharer, kBuffer, {}, {}, false}).error(), -ENOSYS);
    EXPECT_EQ(table_.size(), 0u);
    EXPECT_EQ(table_.count_of(kSharer), 0u);
}

TEST(ConstantTimeComparison, TellsEqualFromUnequalBytes)
{
    const std::uint8_t a[] = {1, 2, 3, 4};
    const std::uint8_t b[] = {1, 2, 3, 5};
    const std::uint8_t c[] = {1, 2, 3};
    EXPECT_TRUE(equal_in_constant_time(a, a));
    EXPECT_FALSE(equal_in_constant_time(a, b));
    EXPECT_FALSE(equal_in_constant_time(a, c));
    EXPECT_TRUE(equal_in_constant_time(std::span<const std::uint8_t>{}, std::span<const std::uint8_t>{}));
}

} // namespace
} // namespace ionsvc
