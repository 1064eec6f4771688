// SPDX-License-Identifier: MIT
// Who may connect to the socket ionsvcd makes itself (not under systemd):
// its mode and group are the ones asked for, whatever the umask it was
// started with.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

// Each test sets the umask its daemon inherits; the next test gets the
// one it had back.
class SocketAccess : public ::testing::Test
{
protected:
    void TearDown() override { ::umask(umask_before_); }

    const mode_t umask_before_ = ::umask(022);
};

struct stat status_of(const std::string &path)
{
    struct stat status{};
    EXPECT_EQ(::stat(path.c_str(), &status), 0) << path;
    return status;
}

TEST_F(SocketAccess, TheSocketIs0660AndItsDirectory0755EvenUnderUmask000)
{
    ::umask(0);
    DaemonProcess daemon;
    const struct stat socket = status_of(daemon.socket_path());
    EXPECT_TRUE(S_ISSOCK(socket.st_mode));
    EXPECT_EQ(socket.st_mode & 07777, 0660u);
    EXPECT_EQ(socket.st_gid, ::getegid());
    EXPECT_EQ(status_of(std::filesystem::path(daemon.socket_path()).parent_path()).st_mode & 07777, 0755u);
    EXPECT_TRUE(daemon.connect("owner").allocate({.size = 4096}));
}

TEST_F(SocketAccess, TheModeAndGroupAreTheOnesGiven)
{
    IONSVC_NEED_ROOT("to give the socket another group");
    ::umask(0077);
    DaemonProcess daemon({"--socket-mode", "0606", "--socket-group", "4242"});
    const struct stat socket = status_of(daemon.socket_path());
    EXPECT_EQ(socket.st_mode & 07777, 0606u);
    EXPECT_EQ(socket.st_gid, 4242u);
    EXPECT_EQ(status_of(std::filesystem::path(daemon.socket_path()).parent_path()).st_mode & 07777, 0755u) << "created 0755 under umask 077 too";
}

TEST_F(SocketAccess, AModeThatIsNotOctalIsRefusedBeforeAnythingIsCreated)
{
    TemporaryDirectory directory;
    const CommandResult result = run_command(
        {ionsvcd_path(), "--socket", directory.path() + "/run/s.sock", "--backend", "memfd", "--socket-mode", "0999"});
    EXPECT_NE(result.exit_code, 0);
    EXPECT_THAT(result.err, HasSubstr("octal mode"));
    EXPECT_FALSE(std::filesystem::exists(directory.path() + "/run"));
}

TEST_F(SocketAccess, AnUnknownGroupStopsTheDaemonNamingIt)
{
    TemporaryDirectory directory;
    const CommandResult result = run_command({ionsvcd_path(), "--socket", directory.path() + "/s.sock", "--backend",
                                              "memfd", "--socket-group", "no-such-group-here"});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_THAT(result.err, HasSubstr("--socket-group no-such-group-here: no such group"));
    EXPECT_FALSE(std::filesystem::exists(directory.path() + "/s.sock"));
}

} // namespace
} // namespace ionsvc::testing
