// SPDX-License-Identifier: MIT
// Text that clients choose (their comm, their name, their buffers' names)
// against the real daemon and ionsvc-ctl: an unprivileged process
// (setresuid in a forked child) whose comm is set by prctl to bytes that
// are not UTF-8 or to terminal escape sequences must not blind stats for
// root, forge a log line or write to the admin's terminal.
#include <sys/prctl.h>
#include <unistd.h>

#include <climits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "raw_connection.h"

namespace ionsvc::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uid_t kAttacker = 65534;

// Child exit codes: which step failed.
constexpr int kUserChange = 10;
constexpr int kComm = 11;
constexpr int kConnect = 12;
constexpr int kAllocate = 13;
constexpr int kBufferNameShown = 14;

// U+FFFD, what a byte that is not UTF-8 becomes.
const std::string kReplacement = "\xEF\xBF\xBD";

bool has_control_bytes(const std::string &text)
{
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if ((byte < 0x20 && byte != '\n') || byte == 0x7F)
            return true;
        // C1 controls (U+0080..U+009F) are C2 80..C2 9F in UTF-8.
        if (byte == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F)
            return true;
    }
    return false;
}

class HostileText : public ::testing::Test
{
protected:
    void SetUp() override
    {
        IONSVC_NEED_ROOT("to run the attacker as another user");
        open_.emplace("", fd_limit(512));
    }

    // Gone with the attacker: its connection and its buffer.
    void TearDown() override
    {
        if (open_)
            open_->expect_back_to_baseline();
    }

    DaemonProcess &daemon() { return open_->daemon(); }
    const DaemonProcess &daemon() const { return open_->daemon(); }

    // An unprivileged process whose comm is comm (set by prctl, any bytes)
    // and whose connection is called client_name, holding a buffer called
    // buffer_name until release; ready is raised once it holds it.
    ChildProcess attacker(const std::string &comm, const std::string &client_name, Signal &ready,
                          Signal &release, const std::string &buffer_name = "frame")
    {
        ChildProcess child([&, comm, client_name, buffer_name] {
            release.close_write_end();
            if (!become_user(kAttacker))
                return kUserChange;
            if (::prctl(PR_SET_NAME, comm.c_str(), 0, 0, 0) != 0)
                return kComm;
            auto client = bufclient::Client::connect({.socket_path = daemon().socket_path(),
                                                      .client_name = client_name});
            if (!client)
                return kConnect;
            auto buffers = client->allocate({.size = 4096, .name = buffer_name});
            if (!buffers)
                return kAllocate;
            // The memfd's name, as /proc shows it to anyone who looks.
            char link[PATH_MAX] = {};
            const std::string path = "/proc/self/fd/" + std::to_string((*buffers)[0].fd());
            if (::readlink(path.c_str(), link, sizeof(link) - 1) < 0 || has_control_bytes(link))
                return kBufferNameShown;
            ready.raise();
            release.wait();
            return 0;
        });
        // Only the child may raise it: a child that fails first is seen as EOF.
        ready.close_write_end();
        return child;
    }

    CommandResult ctl(std::vector<std::string> arguments) const
    {
        arguments.insert(arguments.begin(), {ionsvc_ctl_path(), "--socket", daemon().socket_path()});
        return run_command(arguments);
    }

    // Every stats view, as root sees it: each must succeed and print no
    // control character. Returns the JSON view.
    json every_view_for_root() const
    {
        for (const char *view : {"pids", "heaps", "clients"}) {
            const CommandResult result = ctl({"stats", "--view", view});
            EXPECT_EQ(result.exit_code, 0) << view << ": " << result.err;
            EXPECT_FALSE(has_control_bytes(result.out)) << view << ":\n" << result.out;
        }
        const CommandResult result = ctl({"stats", "--json"});
        EXPECT_EQ(result.exit_code, 0) << result.err;
        EXPECT_FALSE(has_control_bytes(result.out)) << result.out;
        return json::parse(result.out, nullptr, false);
    }

    // The attacker's client entry in the clients view's JSON.
    static json attacker_entry(const json &stats, pid_t pid)
    {
        if (!stats.is_object() || !stats.contains("clients")) {
            ADD_FAILURE() << "no stats to look in";
            return json::object();
        }
        for (const json &client : stats["clients"]) {
            if (client["pid"] == pid)
                return client;
        }
        ADD_FAILURE() << "no client of pid " << pid << " in " << stats.dump();
        return json::object();
    }

    std::optional<OpenDaemon> open_;
};

TEST_F(HostileText, ACommThatIsNotUtf8LeavesEveryStatsViewReadableForRoot)
{
    Signal ready, release;
    ChildProcess child = attacker("\xff\xfe" "evil", "client", ready, release);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();

    const json stats = every_view_for_root();
    EXPECT_EQ(attacker_entry(stats, child.pid())["comm"], kReplacement + kReplacement + "evil");
    open_->expect_others_served();

    release.close_write_end();
    EXPECT_EQ(child.wait(), 0);
}

TEST_F(HostileText, EscapeSequencesInCommAndNamesNeverReachTheAdminsTerminal)
{
    Signal ready, release;
    // Clear the screen and set the window title; a C1 CSI in the name.
    ChildProcess child = attacker("\x1b[2J\x1b]0;x\x07", "cam\x1b[31mred\xC2\x9B" "2J", ready, release,
                                  "buf\x1b[1m\n");
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();

    const json stats = every_view_for_root();
    const json entry = attacker_entry(stats, child.pid());
    EXPECT_EQ(entry["comm"], "\\x1b[2J\\x1b]0;x\\x07");
    EXPECT_EQ(entry["name"], "cam\\x1b[31mred\\u009b2J");
    EXPECT_THAT(ctl({"stats", "--view", "clients"}).out, HasSubstr("\\x1b[2J"));
    open_->expect_others_served();

    release.close_write_end();
    EXPECT_EQ(child.wait(), 0) << "the buffer's name reached /proc with its control bytes";
}

TEST_F(HostileText, ANewlineInAClientNameCannotForgeALogLine)
{
    Signal ready, release;
    const std::string forged = "2026-12-04 12:00:00.000 critical forged by a client";
    ChildProcess child = attacker("comm", "cam\n" + forged, ready, release);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();
    open_->expect_others_served();
    // The name is in the books once Hello is answered; the disconnect logs it.
    const std::string disconnected = "disconnected: pid " + std::to_string(child.pid());
    release.close_write_end();
    EXPECT_EQ(child.wait(), 0);
    ASSERT_TRUE(eventually([&] { return daemon().log().find(disconnected) != std::string::npos; }))
        << daemon().log();

    const std::string log = daemon().log();
    EXPECT_THAT(log, HasSubstr("name 'cam\\x0a" + forged + "'"));
    EXPECT_THAT(log, Not(HasSubstr("\n" + forged)));
}

TEST_F(HostileText, AClientNameCutAtTheLimitEndsOnAWholeCharacter)
{
    Signal ready, release;
    std::string long_name;
    for (int i = 0; i < 200; ++i)
        long_name += "\xC3\xA9"; // é: 2 bytes, so 255 bytes would end inside one
    ChildProcess child = attacker("comm", long_name, ready, release);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();

    const json stats = every_view_for_root();
    EXPECT_EQ(attacker_entry(stats, child.pid())["name"], long_name.substr(0, 254));
    open_->expect_others_served();

    release.close_write_end();
    EXPECT_EQ(child.wait(), 0);
}

TEST_F(HostileText, AStringThatIsNotUtf8IsRefusedAndProtobufSaysNothingInTheLog)
{
    wire::Request hello;
    hello.mutable_hello()->set_protocol_version(kProtocolVersion);
    hello.mutable_hello()->set_client_name("\xff\xfe");
    std::string bytes;
    ASSERT_TRUE(hello.SerializePartialToString(&bytes));
    for (int i = 0; i < 3; ++i) {
        RawConnection raw(daemon().socket_path());
        ASSERT_GT(raw.send_bytes(bytes), 0);
        const wire::Reply reply = raw.receive();
        EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
        EXPECT_THAT(reply.message(), HasSubstr("malformed packet"));
        EXPECT_TRUE(raw.hung_up());
    }
    // A line per such packet would let any client flood the journal.
    EXPECT_TRUE(eventually([&] { return daemon().log().find("protobuf: String field") != std::string::npos; }))
        << daemon().log();
    EXPECT_THAT(daemon().log(), Not(HasSubstr("libprotobuf")));
    open_->expect_others_served();
}

} // namespace
} // namespace ionsvc::testing
