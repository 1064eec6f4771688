// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <sys/eventfd.h>

#include <gtest/gtest.h>

#include <ionsvc/unique_fd.h>

namespace ionsvc {
namespace {

bool is_open(int fd)
{
    return ::fcntl(fd, F_GETFD) >= 0;
}

int new_fd()
{
    return ::eventfd(0, EFD_CLOEXEC);
}

TEST(UniqueFD, ClosesItsFdWhenDestroyed)
{
    const int number = new_fd();
    ASSERT_GE(number, 0);
    {
        UniqueFD fd{number};
        EXPECT_TRUE(fd.is_valid());
        EXPECT_EQ(fd.get(), number);
    }
    EXPECT_FALSE(is_open(number));
}

TEST(UniqueFD, MovingTransfersOwnershipWithoutClosing)
{
    UniqueFD first{new_fd()};
    const int number = first.get();
    UniqueFD second{std::move(first)};
    EXPECT_FALSE(first.is_valid());
    EXPECT_EQ(second.get(), number);
    EXPECT_TRUE(is_open(number));
}

TEST(UniqueFD, MoveAssignmentClosesTheFdItHeldBefore)
{
    UniqueFD target{new_fd()};
    const int old_number = target.get();
    UniqueFD source{new_fd()};
    const int new_number = source.get();
    target = std::move(source);
    EXPECT_FALSE(is_open(old_number));
    EXPECT_EQ(target.get(), new_number);
    EXPECT_TRUE(is_open(new_number));
}

TEST(UniqueFD, ReleaseGivesUpOwnershipWithoutClosing)
{
    UniqueFD fd{new_fd()};
    const int number = fd.release();
    EXPECT_FALSE(fd.is_valid());
    EXPECT_TRUE(is_open(number));
    ::close(number);
}

TEST(UniqueFD, ResetClosesTheOldFdAndTakesTheNewOne)
{
    UniqueFD fd{new_fd()};
    const int old_number = fd.get();
    const int new_number = new_fd();
    fd.reset(new_number);
    EXPECT_FALSE(is_open(old_number));
    EXPECT_EQ(fd.get(), new_number);
    fd.reset();
    EXPECT_FALSE(is_open(new_number));
    EXPECT_FALSE(fd.is_valid());
}

TEST(UniqueFD, DefaultConstructedOwnsNothing)
{
    UniqueFD fd;
    EXPECT_FALSE(fd.is_valid());
    EXPECT_FALSE(static_cast<bool>(fd));
    EXPECT_EQ(fd.get(), -1);
}

} // namespace
} // namespace ionsvc
