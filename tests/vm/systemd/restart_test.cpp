// SPDX-License-Identifier: MIT
// The books across a restart under the real systemd (docs/RECOVERY.md):
// clients hold buffers of every heap, the daemon is SIGKILLed (systemd
// restarts it) or `systemctl restart`ed, and the next daemon has the same
// books from the fd store before anyone reconnects; the clients go on
// through the same objects, and at the end nothing is left anywhere.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "systemd_guest.h"

namespace ionsvc::vmtest {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kSize = 256 * KiB;
constexpr std::uint64_t kSeed = 0x7e57a27;
// alice's quota in buffers: one per heap, then memfd buffers up to it.
constexpr std::size_t kQuotaBuffers = 16;
constexpr int kPoolBuffers = 2;

std::string read_text(const std::string &path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::size_t fds_of(pid_t pid)
{
    std::error_code error;
    std::size_t count = 0;
    for ([[maybe_unused]] const auto &entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error))
        ++count;
    return count;
}

bool is_dma_buf_heap(const std::string &heap)
{
    return heap != "memfd";
}

// The first heap the daemon serves whose buffers are dma-bufs.
std::optional<std::string> first_dma_buf_heap()
{
    for (const std::string &heap : served_heaps()) {
        if (is_dma_buf_heap(heap))
            return heap;
    }
    return std::nullopt;
}

std::size_t fds_in_store()
{
    return static_cast<std::size_t>(std::stoul("0" + unit_property(kService, "NFileDescriptorStore")));
}

// What `stats --json` shows of one pid: bytes and buffers.
std::pair<std::uint64_t, std::uint64_t> figures_of(const json &stats, pid_t pid)
{
    const json *entry = find_by(stats["pids"], "pid", pid);
    if (entry == nullptr)
        return {0, 0};
    return {(*entry)["bytes"].get<std::uint64_t>(), (*entry)["buffers"].get<std::uint64_t>()};
}

// Everything the daemon holds is in systemd's store.
bool all_stored()
{
    return harness::eventually([] {
        const json stats = ctl_json({"stats"});
        return stats.is_object() && stats.contains("recovery") && stats["recovery"]["pending_changes"] == 0;
    });
}

enum class Stop { kCrash, kRestart };

class Restart : public ::testing::TestWithParam<Stop>
{
protected:
    void SetUp() override
    {
        ASSERT_TRUE(environment_error().empty()) << environment_error();
        shipped_ = read_text(installed().config);
        ASSERT_FALSE(shipped_.empty());
        stop_units();
        std::ofstream(installed().config, std::ios::trunc)
            << shipped_ << "\n[quota.uids]\n"
            << user("alice").uid << " = { buffers = " << kQuotaBuffers << " }\n"
            << "[pool.heaps.memfd]\n\"64K\" = " << kPoolBuffers << "\n";
        ASSERT_EQ(systemctl({"start", kSocket}).exit_code, 0);
    }

    void TearDown() override
    {
        stop_units();
        std::ofstream(installed().config, std::ios::trunc) << shipped_;
    }

    static void stop_units()
    {
        systemctl({"stop", kSocket, kService});
        systemctl({"reset-failed", kSocket, kService});
    }

    // The daemon's pool is full: it holds what it holds at rest.
    static bool pool_full()
    {
        return harness::eventually([] {
            const json heaps = ctl_json({"heaps"});
            const json *memfd = heaps.is_object() ? find_by(heaps["heaps"], "name", "memfd") : nullptr;
            return memfd != nullptr && (*memfd)["pool_buffers"] == kPoolBuffers;
        });
    }

    // Stops the daemon as the test's parameter says, and waits for the
    // next one.
    ::testing::AssertionResult stop_and_come_back() const
    {
        const pid_t before = main_pid();
        const harness::CommandResult done = GetParam() == Stop::kCrash
                                                ? systemctl({"kill", "--signal=SIGKILL", kService})
                                                : systemctl({"restart", kService});
        if (done.exit_code != 0)
            return ::testing::AssertionFailure() << "systemctl: " << done.err;
        // After a crash systemd starts it again (Restart=on-failure).
        if (!harness::eventually([&] { return service_is("active") && main_pid() > 0 && main_pid() != before; }))
            return ::testing::AssertionFailure() << "no new daemon: " << unit_property(kService, "ActiveState");
        return ::testing::AssertionSuccess();
    }

    std::string shipped_;
};

// alice holds a buffer of every heap and memfd buffers up to her quota,
// shares one with bob, and after the restart checks, refuses, frees.
std::string alice_body(Channel &parent, const std::vector<std::string> &heaps, uid_t bob)
{
    auto client = bufclient::Client::connect({.client_name = "alice"});
    if (!client)
        return error_text("connect", client.error());
    std::vector<bufclient::Buffer> held;
    std::vector<std::string> held_heaps;
    for (std::size_t i = 0; i < kQuotaBuffers; ++i) {
        const std::string heap = i < heaps.size() ? heaps[i] : "memfd";
        auto buffers = client->allocate({.heap = heap, .size = kSize, .name = "kept"});
        if (!buffers)
            return error_text("allocate from " + heap, buffers.error());
        if (std::string problem = fill_through_mmap(buffers->front().fd(), kSize, kSeed + i, is_dma_buf_heap(heap));
            !problem.empty())
            return heap + ": " + problem;
        held.push_back(std::move(buffers->front()));
        held_heaps.push_back(heap);
    }
    auto token = client->share(held.front(), {.uid = bob});
    if (!token)
        return error_text("share", token.error());
    if (std::string problem = parent.send("held " + *token); !problem.empty())
        return problem;
    if (std::string problem = parent.expect("restarted"); !problem.empty())
        return problem;

    // The same object, the same buffers: the first request reconnects.
    for (std::size_t i = 0; i < held.size(); ++i) {
        if (std::string problem = check_through_mmap(held[i].fd(), kSize, kSeed + i, is_dma_buf_heap(held_heaps[i]));
            !problem.empty())
            return held_heaps[i] + " after the restart: " + problem;
    }
    auto over = client->allocate({.heap = "memfd", .size = 4 * KiB});
    if (over || over.error().code != bufclient::StatusCode::kQuotaExceeded)
        return "the allocation past the quota after the restart: " +
               (over ? std::string("served") : over.error().message);
    if (auto freed = client->free(held.back()); !freed)
        return error_text("free", freed.error());
    held.pop_back();
    auto within = client->allocate({.heap = "memfd", .size = 4 * KiB});
    if (!within)
        return error_text("the allocation within the quota after a free", within.error());
    held.push_back(std::move(within->front()));
    for (const bufclient::Buffer &buffer : held) {
        if (auto freed = client->free(buffer); !freed)
            return error_text("free", freed.error());
    }
    if (auto flushed = client->flush_frees(); !flushed)
        return error_text("flush_frees", flushed.error());
    return parent.send("freed");
}

std::string bob_body(Channel &parent)
{
    auto client = bufclient::Client::connect({.client_name = "bob"});
    if (!client)
        return error_text("connect", client.error());
    const Channel::Message order = parent.receive();
    const std::vector<std::string> words = words_of(order.text);
    if (words.size() != 2 || words[0] != "import")
        return "unexpected order '" + order.text + "' " + order.error;
    auto buffer = client->import(words[1]);
    if (!buffer)
        return error_text("import", buffer.error());
    if (std::string problem = parent.send("imported"); !problem.empty())
        return problem;
    if (std::string problem = parent.expect("restarted"); !problem.empty())
        return problem;
    if (auto freed = client->free(*buffer); !freed)
        return error_text("free", freed.error());
    if (auto flushed = client->flush_frees(); !flushed)
        return error_text("flush_frees", flushed.error());
    return parent.send("freed");
}

TEST_P(Restart, TheNextDaemonHasTheSameBooksAndTheClientsFreeThroughTheSameObjects)
{
    // The daemon at rest: its pool made, nobody's buffers.
    ASSERT_EQ(ctl_json({"stats"}).is_object(), true);
    ASSERT_TRUE(pool_full());
    const std::size_t rest_fds = fds_of(main_pid());
    const std::vector<std::string> heaps = served_heaps();
    ASSERT_GE(heaps.size(), 3u);

    const Persona bob_persona = user("bob");
    ClientProcess alice(
        "restart-alice", [&](Channel &parent) { return alice_body(parent, heaps, bob_persona.uid); },
        user("alice"));
    ClientProcess bob("restart-bob", bob_body, bob_persona);
    const Channel::Message held = alice.channel().receive();
    ASSERT_THAT(held.text, HasSubstr("held ")) << held.error;
    ASSERT_EQ(bob.channel().send("import " + held.text.substr(5)), "");
    ASSERT_EQ(bob.channel().expect("imported"), "");

    ASSERT_TRUE(all_stored());
    const json before = ctl_json({"stats"});
    EXPECT_EQ(before["recovery"]["stored_buffers"], kQuotaBuffers);
    // Each buffer, and the state in one or both of its slots.
    EXPECT_THAT(fds_in_store(), ::testing::AnyOf(kQuotaBuffers + 1, kQuotaBuffers + 2));
    const auto alice_before = figures_of(before, alice.pid());
    const auto bob_before = figures_of(before, bob.pid());
    EXPECT_EQ(alice_before.second, kQuotaBuffers);
    EXPECT_EQ(bob_before.second, 1u);

    ASSERT_TRUE(stop_and_come_back());

    // Before anyone is back: the same figures per process.
    const json after = ctl_json({"stats"});
    EXPECT_EQ(after["recovery"]["restored_buffers"], kQuotaBuffers);
    EXPECT_EQ(after["recovery"]["awaiting_reclaim"], 2);
    EXPECT_EQ(figures_of(after, alice.pid()), alice_before);
    EXPECT_EQ(figures_of(after, bob.pid()), bob_before);

    ASSERT_EQ(alice.channel().send("restarted"), "");
    ASSERT_EQ(bob.channel().send("restarted"), "");
    EXPECT_EQ(alice.channel().expect("freed"), "");
    EXPECT_EQ(bob.channel().expect("freed"), "");
    EXPECT_TRUE(alice.finished());
    EXPECT_TRUE(bob.finished());

    // Nothing left: the books, the store (the state alone), the daemon's
    // fds (its pool refilled once, not twice).
    const bool empty = harness::eventually([] {
        const json stats = ctl_json({"stats"});
        if (!stats.is_object())
            return false;
        for (const json &heap : stats["heaps"]) {
            if (heap["live_bytes"] != 0)
                return false;
        }
        return stats["recovery"]["pending_changes"] == 0 && stats["recovery"]["stored_buffers"] == 0;
    });
    EXPECT_TRUE(empty) << ctl_json({"stats"}).dump();
    EXPECT_TRUE(pool_full());
    EXPECT_TRUE(harness::eventually([] { return fds_in_store() <= 2; })) << fds_in_store() << " fds in the store";
    EXPECT_TRUE(harness::eventually([&] { return fds_of(main_pid()) == rest_fds; }))
        << fds_of(main_pid()) << " fds, " << rest_fds << " at rest before";
}

INSTANTIATE_TEST_SUITE_P(Stops, Restart, ::testing::Values(Stop::kCrash, Stop::kRestart),
                         [](const ::testing::TestParamInfo<Stop> &stop) {
                             return stop.param == Stop::kCrash ? "AfterSigkill" : "AfterSystemctlRestart";
                         });

TEST_F(Restart, ADmaBufWhoseClientExitedIsReleasedThoughSystemdHoldsACopy)
{
    const std::optional<std::string> dma_buf = first_dma_buf_heap();
    ASSERT_TRUE(dma_buf) << "the daemon serves no dma-buf heap";
    ClientProcess client(
        "restart-leaver",
        [&](Channel &parent) -> std::string {
            auto connection = bufclient::Client::connect({.client_name = "leaver"});
            if (!connection)
                return error_text("connect", connection.error());
            auto buffers = connection->allocate({.heap = *dma_buf, .size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            if (std::string problem = parent.send("held"); !problem.empty())
                return problem;
            // It leaves with its fd still held and its buffer not freed.
            return parent.expect("leave");
        },
        user("alice"));
    ASSERT_EQ(client.channel().expect("held"), "");
    ASSERT_TRUE(all_stored());
    ASSERT_EQ(ctl_json({"stats"})["recovery"]["stored_buffers"], 1);
    const std::size_t stored = fds_in_store();
    ASSERT_GE(stored, 2u) << "the buffer and the state";
    ASSERT_EQ(client.channel().send("leave"), "");
    EXPECT_TRUE(client.finished());
    // Its fd closed, only the daemon's and the store's copy are left:
    // nobody else references it, and it leaves the books and the store.
    EXPECT_TRUE(harness::eventually([&] {
        const json stats = ctl_json({"stats"});
        const json *heap = stats.is_object() ? find_by(stats["heaps"], "name", *dma_buf) : nullptr;
        return heap != nullptr && (*heap)["live_bytes"] == 0 && (*heap)["orphaned"].empty();
    })) << ctl_json({"stats"}).dump();
    EXPECT_TRUE(harness::eventually([] { return fds_in_store() <= 2; })) << fds_in_store() << " fds in the store";
    EXPECT_EQ(ctl_json({"stats"})["recovery"]["stored_buffers"], 0);
}

TEST_P(Restart, AClientThatNeverComesBackLeavesItsBuffersAsOrphansOfItsLastIdentity)
{
    const std::optional<std::string> dma_buf = first_dma_buf_heap();
    ASSERT_TRUE(dma_buf) << "the daemon serves no dma-buf heap";
    ClientProcess client(
        "restart-gone",
        [&](Channel &parent) -> std::string {
            auto connection = bufclient::Client::connect({.client_name = "gone"});
            if (!connection)
                return error_text("connect", connection.error());
            auto buffers = connection->allocate({.heap = *dma_buf, .size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            const int fd = buffers->front().fd();
            if (std::string problem = parent.send("held", std::span(&fd, 1)); !problem.empty())
                return problem;
            // It leaves after the restart without a word to the new daemon;
            // the parent holds the buffer on.
            return parent.expect("exit");
        },
        user("alice"));
    Channel::Message held = client.channel().receive();
    ASSERT_EQ(held.text, "held") << held.error;
    ASSERT_EQ(held.fds.size(), 1u);
    ASSERT_TRUE(all_stored());
    ASSERT_TRUE(stop_and_come_back());
    const json restored = ctl_json({"stats"});
    const json *entry = find_by(restored["clients"], "pid", client.pid());
    ASSERT_NE(entry, nullptr) << restored.dump();
    EXPECT_EQ((*entry)["awaiting_reclaim"], true);

    const pid_t gone = client.pid(); // finished() reaps it
    ASSERT_EQ(client.channel().send("exit"), "");
    EXPECT_TRUE(client.finished());
    // The daemon sees its process gone and lets it go as at a disconnect:
    // the buffer lives on in this process, an orphan charged to alice.
    const auto orphaned_here = [&] {
        const json stats = ctl_json({"stats"});
        const json *heap = stats.is_object() ? find_by(stats["heaps"], "name", *dma_buf) : nullptr;
        return heap != nullptr && find_by(stats["clients"], "pid", gone) == nullptr &&
               (*heap)["orphaned"].size() == 1 && (*heap)["orphaned"][0]["pid"] == gone;
    };
    EXPECT_TRUE(harness::eventually(orphaned_here)) << ctl_json({"stats"}).dump();
    // alice's quota of buffers counts it.
    const Persona alice = user("alice");
    const json as_alice = ctl_json({"stats"}, &alice);
    bool counted = false;
    for (const json &limit : as_alice["limits"])
        counted = counted || (limit["unit"] == "buffers" && limit["used"] == 1);
    EXPECT_TRUE(counted) << as_alice.dump();
    held.fds.clear();
    EXPECT_TRUE(harness::eventually([&] {
        const json stats = ctl_json({"stats"});
        const json *heap = stats.is_object() ? find_by(stats["heaps"], "name", *dma_buf) : nullptr;
        return heap != nullptr && (*heap)["live_bytes"] == 0 && (*heap)["orphaned"].empty();
    })) << "the orphan outlived its last fd: " << ctl_json({"stats"}).dump();
}

// docs/RECOVERY.md's way to the same without the units: the daemon as a
// transient service of systemd-run, on a socket of its own, which its
// clients find again by retrying while the next daemon makes it.
TEST_F(Restart, ADaemonRunBySystemdRunOnItsOwnSocketKeepsItsBooksToo)
{
    constexpr const char *kUnit = "ionsvc-dev.service";
    constexpr const char *kDevSocket = "/run/ionsvc-dev.sock";
    const harness::CommandResult started = harness::run_command(
        {"/usr/bin/systemd-run", "--quiet", "--unit=ionsvc-dev", "-p", "FileDescriptorStoreMax=64", "-p",
         "Restart=on-failure", "-p", "Type=notify", "/usr/sbin/ionsvcd", "--socket", kDevSocket, "--socket-mode",
         "0666", "--backend", "memfd", "--fd-store-max", "64"});
    ASSERT_EQ(started.exit_code, 0) << started.err;
    const auto dev_stats = [&] {
        return ctl_json({"--socket", kDevSocket, "stats"});
    };
    ClientProcess client(
        "restart-dev",
        [&](Channel &parent) -> std::string {
            auto connection = bufclient::Client::connect({.socket_path = kDevSocket, .client_name = "dev"});
            if (!connection)
                return error_text("connect", connection.error());
            auto buffers = connection->allocate({.size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            if (std::string problem = parent.send("held"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("restarted"); !problem.empty())
                return problem;
            auto stats = connection->stats();
            if (!stats)
                return error_text("stats after the restart", stats.error());
            if (stats->clients.size() != 1 || stats->clients[0].heaps.empty() ||
                stats->clients[0].heaps[0].bytes != kSize)
                return "after the restart the client's own stats do not show its buffer";
            auto freed = connection->free(buffers->front());
            return freed ? connection->flush_frees() ? "" : "flush_frees failed" : error_text("free", freed.error());
        },
        user("alice"));
    ASSERT_EQ(client.channel().expect("held"), "");
    ASSERT_TRUE(harness::eventually([&] {
        const json stats = dev_stats();
        return stats.is_object() && stats["recovery"]["stored_buffers"] == 1 &&
               stats["recovery"]["pending_changes"] == 0;
    }));
    const std::string killed = unit_property(kUnit, "MainPID");
    ASSERT_EQ(systemctl({"kill", "--signal=SIGKILL", kUnit}).exit_code, 0);
    EXPECT_TRUE(harness::eventually([&] {
        return unit_property(kUnit, "ActiveState") == "active" && unit_property(kUnit, "MainPID") != killed &&
               unit_property(kUnit, "MainPID") != "0";
    }));
    ASSERT_EQ(client.channel().send("restarted"), "");
    EXPECT_TRUE(client.finished());
    EXPECT_TRUE(harness::eventually([&] {
        const json stats = dev_stats();
        return stats.is_object() && stats["recovery"]["stored_buffers"] == 0 && stats["heaps"][0]["live_bytes"] == 0;
    })) << dev_stats().dump();
    systemctl({"stop", kUnit});
    systemctl({"reset-failed", kUnit});
}

} // namespace
} // namespace ionsvc::vmtest
