// SPDX-License-Identifier: MIT
// Share and import between real processes of different users: tokens,
// whom they admit, and what a wrong guess gets.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fd_count.h"
#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr uid_t kViewer = 65534; // nobody
constexpr uid_t kStranger = 65533;
constexpr std::uint64_t kSize = 64 * 1024;

// Child exit codes, so that a failure says which step it was.
enum ChildStep : int {
    kOk = 0,
    kUserChange = 10,
    kConnect = 11,
    kImport = 12,
    kMap = 13,
    kPattern = 14,
    kRefusal = 15,
};

// Opens the daemon's socket to every user, as a socket unit's group would
// open it to the clients' group.
void open_to_everyone(const DaemonProcess &daemon)
{
    ASSERT_EQ(::chmod(daemon.directory().c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(daemon.socket_path().c_str(), 0666), 0) << std::strerror(errno);
}

class ShareImport : public ::testing::Test
{
protected:
    void SetUp() override
    {
        IONSVC_NEED_ROOT("to run clients as other users");
        open_to_everyone(daemon_);
        auto buffers = owner_.allocate({.size = kSize, .name = "shared-frame"});
        ASSERT_TRUE(buffers) << buffers.error().message;
        buffer_ = std::move(buffers->front());
        auto mapping = buffer_->map();
        ASSERT_TRUE(mapping) << mapping.error().message;
        std::memset(mapping->data(), 0x5a, kSize);
    }

    std::string share(const bufclient::ShareOptions &options = {})
    {
        auto token = owner_.share(*buffer_, options);
        EXPECT_TRUE(token) << token.error().message;
        return token ? *token : std::string{};
    }

    // A child that becomes uid, imports token and checks the pattern; it
    // holds the buffer until release is raised (or its write end closed).
    ChildProcess importer(uid_t uid, const std::string &token, Signal &ready, Signal &release)
    {
        return ChildProcess([&, uid, token] {
            release.close_write_end();
            if (!become_user(uid))
                return int{kUserChange};
            auto client = daemon_.connect("importer");
            auto buffer = client.import(token);
            if (!buffer)
                return int{kImport};
            auto mapping = buffer->map();
            if (!mapping)
                return int{kMap};
            const auto *bytes = static_cast<const unsigned char *>(mapping->data());
            for (std::size_t i = 0; i < kSize; ++i) {
                if (bytes[i] != 0x5a)
                    return int{kPattern};
            }
            ready.raise();
            release.wait();
            return int{kOk};
        });
    }

    // In a child of uid: the error an import of token gets, as an exit code
    // of kRefusal + status code, or kImport if it succeeded.
    int refusal_as(uid_t uid, const std::string &token)
    {
        ChildProcess child([&] {
            if (!become_user(uid))
                return int{kUserChange};
            auto client = daemon_.connect("guesser");
            auto buffer = client.import(token);
            return buffer ? int{kImport} : kRefusal + static_cast<int>(buffer.error().code);
        });
        return child.wait();
    }

    json stats()
    {
        const CommandResult result =
            run_command({ionsvc_ctl_path(), "--socket", daemon_.socket_path(), "stats", "--json"});
        EXPECT_EQ(result.exit_code, 0) << result.err;
        return json::parse(result.out);
    }

    DaemonProcess daemon_;
    bufclient::Client owner_ = daemon_.connect("owner");
    std::optional<bufclient::Buffer> buffer_;
};

TEST_F(ShareImport, AnotherUsersProcessImportsTheBufferAndItCountsInBothOnceInTheHeap)
{
    Signal ready, release;
    ChildProcess child = importer(kViewer, share({.uid = kViewer}), ready, release);
    ASSERT_TRUE(ready.wait()) << "the importer failed at step " << child.wait();

    const json now = stats();
    std::map<int, json> by_pid;
    for (const json &pid : now["pids"])
        by_pid[pid["pid"].get<int>()] = pid;
    ASSERT_TRUE(by_pid.contains(child.pid())) << now.dump();
    ASSERT_TRUE(by_pid.contains(::getpid())) << now.dump();
    EXPECT_EQ(by_pid[child.pid()]["bytes"], kSize);
    EXPECT_EQ(by_pid[child.pid()]["shared_bytes"], kSize);
    EXPECT_EQ(by_pid[::getpid()]["shared_bytes"], kSize);
    EXPECT_EQ(now["heaps"][0]["live_bytes"], kSize) << "the heap counts the buffer once";
    EXPECT_EQ(now["heaps"][0]["live_buffers"], 1);

    release.raise();
    EXPECT_EQ(child.wait(), kOk);
}

TEST_F(ShareImport, ATokenForOneUserIsRefusedToAnotherAndStillServesItsUser)
{
    const std::string token = share({.uid = kViewer});
    EXPECT_EQ(refusal_as(kStranger, token), kRefusal + static_cast<int>(StatusCode::kPermissionDenied));

    Signal ready, release;
    ChildProcess child = importer(kViewer, token, ready, release);
    ASSERT_TRUE(ready.wait()) << "the importer failed at step " << child.wait();
    release.raise();
    EXPECT_EQ(child.wait(), kOk);
}

TEST_F(ShareImport, AUsedTokenIsNotFound)
{
    const std::string token = share();
    Signal ready, release;
    ChildProcess child = importer(kViewer, token, ready, release);
    ASSERT_TRUE(ready.wait()) << "the importer failed at step " << child.wait();
    EXPECT_EQ(refusal_as(kViewer, token), kRefusal + static_cast<int>(StatusCode::kNotFound));
    release.raise();
    EXPECT_EQ(child.wait(), kOk);
}

TEST_F(ShareImport, WrongTokensAreAllRefusedAndNoPartialMatchIsAccepted)
{
    const std::string token = share({.reusable = true});
    auto guesser = daemon_.connect("guesser");
    const std::size_t daemon_fds = daemon_.open_fds();

    std::mt19937_64 random(20261121);
    const char *const digits = "0123456789abcdef";
    for (int i = 0; i < 2000; ++i) {
        std::string guess(48, '0');
        for (char &digit : guess)
            digit = digits[random() % 16];
        auto buffer = guesser.import(guess);
        ASSERT_FALSE(buffer);
        ASSERT_EQ(buffer.error().code, StatusCode::kNotFound) << buffer.error().message;
    }
    // The token with any one digit changed: right but for that digit.
    for (std::size_t i = 0; i < token.size(); ++i) {
        std::string near = token;
        near[i] = near[i] == '0' ? '1' : '0';
        auto buffer = guesser.import(near);
        ASSERT_FALSE(buffer) << "digit " << i;
        ASSERT_EQ(buffer.error().code, StatusCode::kNotFound);
        EXPECT_EQ(buffer.error().message, "no such share token: never issued, already used, revoked, or mistyped");
    }
    EXPECT_EQ(daemon_.open_fds(), daemon_fds) << "refusals leak nothing";

    auto buffer = guesser.import(token);
    ASSERT_TRUE(buffer) << "the real token still works: " << buffer.error().message;
}

TEST_F(ShareImport, ATokenThatIsNotHexIsAnInvalidArgument)
{
    auto importer = daemon_.connect("importer");
    auto wrong_length = importer.import("abc");
    ASSERT_FALSE(wrong_length);
    EXPECT_EQ(wrong_length.error().code, StatusCode::kInvalidArgument);
    EXPECT_THAT(wrong_length.error().message, HasSubstr("48 hex digits"));
    auto not_hex = importer.import(std::string(48, 'z'));
    ASSERT_FALSE(not_hex);
    EXPECT_EQ(not_hex.error().code, StatusCode::kInvalidArgument);
}

TEST_F(ShareImport, ARevokedTokenIsNotFound)
{
    const std::string token = share();
    ASSERT_TRUE(owner_.revoke(token));
    EXPECT_EQ(refusal_as(kViewer, token), kRefusal + static_cast<int>(StatusCode::kNotFound));
    auto again = owner_.revoke(token);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, StatusCode::kNotFound);
}

TEST_F(ShareImport, ATokenExpiresAfterItsTimeToLive)
{
    const std::string token = share({.ttl = std::chrono::milliseconds(1), .reusable = true});
    auto importer = daemon_.connect("importer");
    // Time passes between attempts; sooner or later the token is expired.
    bufclient::Error last;
    ASSERT_TRUE(eventually([&] {
        auto buffer = importer.import(token);
        if (!buffer)
            last = buffer.error();
        return !buffer;
    }));
    EXPECT_EQ(last.code, StatusCode::kNotFound);
    EXPECT_EQ(last.message, "the share token has expired");
}

TEST_F(ShareImport, ATokenDiesWhenItsSharerFreesTheBuffer)
{
    const std::string token = share();
    ASSERT_TRUE(owner_.free(*buffer_));
    EXPECT_EQ(refusal_as(kViewer, token), kRefusal + static_cast<int>(StatusCode::kNotFound));
}

TEST_F(ShareImport, TheImporterKeepsTheBufferAfterTheSharerLeaves)
{
    // The sharer is a process of its own: a forked importer would keep a
    // connection of this process open.
    int token_pipe[2];
    ASSERT_EQ(::pipe2(token_pipe, O_CLOEXEC), 0);
    UniqueFD token_read{token_pipe[0]};
    UniqueFD token_write{token_pipe[1]};
    Signal leave;
    ChildProcess sharer([&] {
        token_read.reset();
        leave.close_write_end();
        auto client = daemon_.connect("sharer");
        auto buffers = client.allocate({.size = kSize});
        if (!buffers)
            return 1;
        std::memset(buffers->front().map()->data(), 0x5a, kSize);
        auto token = client.share(buffers->front());
        if (!token || ::write(token_write.get(), token->data(), token->size()) != 48)
            return 2;
        leave.wait();
        return 0;
    });
    token_write.reset();
    leave.close_read_end();
    std::string token(48, '\0');
    ASSERT_EQ(::read(token_read.get(), token.data(), token.size()), 48) << "the sharer failed: " << sharer.wait();

    Signal ready, release;
    ChildProcess child = importer(kViewer, token, ready, release);
    ASSERT_TRUE(ready.wait()) << "the importer failed at step " << child.wait();
    // A byte, not a close: the importer holds a copy of the write end.
    leave.raise();
    ASSERT_EQ(sharer.wait(), 0);

    json now;
    ASSERT_TRUE(eventually([&] {
        now = stats();
        return now["pids"].size() == 2; // this process and the importer
    })) << now.dump();
    for (const json &pid : now["pids"]) {
        if (pid["pid"] == child.pid()) {
            EXPECT_EQ(pid["bytes"], kSize);
            EXPECT_EQ(pid["shared_bytes"], 0) << "it holds the buffer alone now";
        }
    }
    EXPECT_EQ(now["heaps"][0]["live_bytes"], 2 * kSize) << "the owner's buffer and the imported one";
    release.raise();
    EXPECT_EQ(child.wait(), kOk);
}

} // namespace
} // namespace ionsvc::testing
