// SPDX-License-Identifier: MIT
// What ionsvc-ctl shows against what real processes hold.
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using nlohmann::json;

// A child that connects, allocates count buffers of size, tells the parent,
// and holds them until the parent says go.
ChildProcess holder(const DaemonProcess &daemon, std::uint64_t size, std::uint32_t count,
                    Signal &ready, Signal &release)
{
    return ChildProcess([&, size, count] {
        release.close_write_end(); // so that the parent's close is seen
        auto client = bufclient::Client::connect({.socket_path = daemon.socket_path(),
                                                  .client_name = "holder"});
        if (!client)
            return 10;
        auto buffers = client->allocate({.size = size, .count = count});
        if (!buffers)
            return 11;
        ready.raise();
        release.wait();
        return 0;
    });
}

json stats_json(const DaemonProcess &daemon, std::vector<std::string> extra = {})
{
    std::vector<std::string> argv = {ionsvc_ctl_path(), "--socket", daemon.socket_path(), "stats",
                                     "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const CommandResult result = run_command(argv);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return json::parse(result.out);
}

const json *find_pid(const json &stats, pid_t pid)
{
    for (const json &entry : stats["pids"]) {
        if (entry["pid"] == pid)
            return &entry;
    }
    return nullptr;
}

// The daemon handles a disconnect in its own time: wait until it has.
bool memfd_heap_empties(bufclient::Client &observer)
{
    return eventually([&] {
        auto heaps = observer.list_heaps();
        return heaps && heaps->front().live_buffers == 0;
    });
}

TEST(Stats, IonsvcCtlJsonShowsExactlyWhatEachProcessHolds)
{
    DaemonProcess daemon;
    Signal ready, release;
    ChildProcess first = holder(daemon, 64 * 1024, 3, ready, release);
    ChildProcess second = holder(daemon, 4096, 5, ready, release);
    ASSERT_TRUE(ready.wait());
    ASSERT_TRUE(ready.wait());

    const json stats = stats_json(daemon);
    const json *a = find_pid(stats, first.pid());
    const json *b = find_pid(stats, second.pid());
    ASSERT_NE(a, nullptr) << stats.dump(2);
    ASSERT_NE(b, nullptr) << stats.dump(2);
    EXPECT_EQ((*a)["bytes"], 3 * 64 * 1024);
    EXPECT_EQ((*a)["buffers"], 3);
    EXPECT_EQ((*b)["bytes"], 5 * 4096);
    EXPECT_EQ((*b)["buffers"], 5);
    EXPECT_EQ((*a)["heaps"][0]["heap"], "memfd");
    EXPECT_EQ(stats["heaps"][0]["live_bytes"], 3 * 64 * 1024 + 5 * 4096);

    // Narrowed to one pid, only that pid shows and the heap total is its own.
    const json narrowed = stats_json(daemon, {"--pid", std::to_string(second.pid())});
    ASSERT_EQ(narrowed["pids"].size(), 1u);
    EXPECT_EQ(narrowed["pids"][0]["pid"], second.pid());
    EXPECT_EQ(narrowed["heaps"][0]["live_bytes"], 5 * 4096);

    release.close_write_end();
    EXPECT_EQ(first.wait(), 0);
    EXPECT_EQ(second.wait(), 0);
}

TEST(Stats, IonsvcCtlLeavesItsOwnConnectionOut)
{
    DaemonProcess daemon;
    const json stats = stats_json(daemon);
    EXPECT_TRUE(stats["pids"].empty()) << stats.dump(2);
    EXPECT_TRUE(stats["clients"].empty()) << stats.dump(2);
}

TEST(Stats, ADisconnectEmptiesTheBooks)
{
    DaemonProcess daemon;
    Signal ready, release;
    ChildProcess child = holder(daemon, 1 << 20, 2, ready, release);
    ASSERT_TRUE(ready.wait());
    const pid_t pid = child.pid();
    ASSERT_NE(find_pid(stats_json(daemon), pid), nullptr);

    release.close_write_end();
    ASSERT_EQ(child.wait(), 0);

    auto observer = daemon.connect("observer");
    ASSERT_TRUE(memfd_heap_empties(observer));
    const json stats = stats_json(daemon);
    EXPECT_EQ(find_pid(stats, pid), nullptr);
    EXPECT_EQ(stats["heaps"][0]["live_bytes"], 0);
    EXPECT_EQ(stats["heaps"][0]["live_buffers"], 0);
}

// memfd shows no reference count in fdinfo: its books say what clients
// asked for and did not free (docs/ARCHITECTURE.md, release detection).
TEST(Stats, AMemfdBufferItsClientClosedStaysInTheBooksUntilFreed)
{
    DaemonProcess daemon;
    auto client = daemon.connect("closer");
    auto buffers = client.allocate({.size = 8192});
    ASSERT_TRUE(buffers) << buffers.error().message;
    buffers->front().take_fd().reset();

    const json before = stats_json(daemon);
    const json *mine = find_pid(before, ::getpid());
    ASSERT_NE(mine, nullptr);
    EXPECT_EQ((*mine)["bytes"], 8192);

    ASSERT_TRUE(client.free(buffers->front()));
    // A request on the same connection: the daemon has heard of the free.
    ASSERT_TRUE(client.list_heaps());
    const json after = stats_json(daemon);
    mine = find_pid(after, ::getpid());
    ASSERT_NE(mine, nullptr);
    EXPECT_EQ((*mine)["bytes"], 0);
}

TEST(Stats, AMemfdBufferLeavesTheBooksWithItsClientEvenIfHeldElsewhere)
{
    DaemonProcess daemon;
    UniqueFD kept;
    {
        auto client = daemon.connect("leaver");
        auto buffers = client.allocate({.size = 8192});
        ASSERT_TRUE(buffers) << buffers.error().message;
        kept = buffers->front().take_fd();
    }
    auto observer = daemon.connect("observer");
    ASSERT_TRUE(memfd_heap_empties(observer));
    const json stats = stats_json(daemon, {"--view", "heaps"});
    EXPECT_TRUE(stats["heaps"][0]["orphaned"].empty()) << stats.dump();
    EXPECT_TRUE(kept) << "the buffer itself lives on in whoever holds it";
}

TEST(Stats, TheHeapsViewIsIonsDebugfsLayoutWithTheClientsRow)
{
    DaemonProcess daemon;
    auto client = daemon.connect("viewer");
    auto buffers = client.allocate({.size = 3 * 4096});
    ASSERT_TRUE(buffers);

    const CommandResult result = run_command(
        {ionsvc_ctl_path(), "--socket", daemon.socket_path(), "stats", "--view", "heaps", "--pid",
         std::to_string(::getpid())});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    std::ifstream comm_file("/proc/self/comm");
    std::string comm;
    std::getline(comm_file, comm);
    char row[128];
    std::snprintf(row, sizeof(row), "%16s %16u %16zu\n", comm.c_str(),
                  static_cast<unsigned>(::getpid()), static_cast<std::size_t>(3 * 4096));
    EXPECT_NE(result.out.find("          client              pid             size\n"
                              "----------------------------------------------------\n"),
              std::string::npos)
        << result.out;
    EXPECT_NE(result.out.find(row), std::string::npos) << result.out;
    char total[64];
    std::snprintf(total, sizeof(total), "%16s %16zu\n", "total ", static_cast<std::size_t>(3 * 4096));
    EXPECT_NE(result.out.find(total), std::string::npos) << result.out;
}

TEST(Stats, TheClientsViewListsEachHeapWithItsBytes)
{
    DaemonProcess daemon;
    auto client = daemon.connect("viewer");
    auto buffers = client.allocate({.size = 8192, .count = 2});
    ASSERT_TRUE(buffers);

    const CommandResult result = run_command(
        {ionsvc_ctl_path(), "--socket", daemon.socket_path(), "stats", "--view", "clients"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("       heap_name:    size_in_bytes\n"
                              "           memfd:            16384\n"),
              std::string::npos)
        << result.out;
}

TEST(Stats, IonsvcCtlHeapsListsTheMemfdHeapWithLiveUsage)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 4096, .count = 3});
    ASSERT_TRUE(buffers);
    const CommandResult result =
        run_command({ionsvc_ctl_path(), "--socket", daemon.socket_path(), "heaps", "--json"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    const json heaps = json::parse(result.out);
    ASSERT_EQ(heaps["heaps"].size(), 1u);
    EXPECT_EQ(heaps["heaps"][0]["name"], "memfd");
    EXPECT_EQ(heaps["heaps"][0]["backend"], "memfd");
    EXPECT_EQ(heaps["heaps"][0]["live_buffers"], 3);
    EXPECT_EQ(heaps["heaps"][0]["live_bytes"], 3 * 4096);
}

TEST(Stats, IonsvcCtlWithoutADaemonSaysSoAndFails)
{
    TemporaryDirectory directory;
    const CommandResult result =
        run_command({ionsvc_ctl_path(), "--socket", directory.path() + "/none.sock", "stats"});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_NE(result.err.find("UNAVAILABLE"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("none.sock"), std::string::npos) << result.err;
}

} // namespace
} // namespace ionsvc::testing
