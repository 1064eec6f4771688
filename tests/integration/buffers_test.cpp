// SPDX-License-Identifier: MIT
// `ionsvc-ctl buffers` and Client::list_buffers against a real daemon: who
// allocated each buffer and who holds it, for real processes and uids.
#include <unistd.h>

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr int kUserChange = 90;
constexpr int kOtherFailure = 91;

CommandResult ctl_buffers(const DaemonProcess &daemon, std::vector<std::string> extra = {})
{
    std::vector<std::string> argv = {ionsvc_ctl_path(), "--socket", daemon.socket_path(), "buffers"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
}

TEST(Buffers, IonsvcCtlListsEachBufferLargestFirstWithWhoAllocatedItAndWhoHoldsIt)
{
    DaemonProcess daemon;
    Signal ready, release;
    // One process, two connections: the sharer allocates and shares a
    // frame, the importer takes it and makes a small buffer of its own,
    // then the sharer leaves.
    ChildProcess child([&] {
        release.close_write_end();
        auto importer = daemon.connect("importer");
        {
            auto sharer = daemon.connect("sharer");
            auto frame = sharer.allocate({.size = 64 * 1024, .name = "frame"});
            if (!frame)
                return kOtherFailure;
            auto token = sharer.share(frame->front());
            if (!token || !importer.import(*token))
                return kOtherFailure;
        }
        if (!importer.allocate({.size = 4096, .name = "own"}))
            return kOtherFailure;
        ready.raise();
        release.wait();
        return 0;
    });
    ASSERT_TRUE(ready.wait()) << "the child failed with " << child.wait();
    // The sharer's disconnect is the daemon's to handle in its own time.
    json listing;
    ASSERT_TRUE(eventually([&] {
        const CommandResult result = ctl_buffers(daemon, {"--json"});
        listing = json::parse(result.out, nullptr, false);
        return result.exit_code == 0 && !listing.is_discarded() &&
               listing["buffers"].size() == 2 && !listing["buffers"][0]["allocated_by"]["connected"];
    })) << listing.dump(2);

    const json &frame = listing["buffers"][0];
    EXPECT_EQ(frame["name"], "frame");
    EXPECT_EQ(frame["size"], 64 * 1024);
    EXPECT_EQ(frame["allocated_by"]["name"], "sharer");
    EXPECT_EQ(frame["allocated_by"]["pid"], child.pid());
    ASSERT_EQ(frame["holders"].size(), 1u);
    EXPECT_EQ(frame["holders"][0]["name"], "importer");
    EXPECT_NE(frame["inode"], 0);
    const json &own = listing["buffers"][1];
    EXPECT_EQ(own["name"], "own");
    EXPECT_TRUE(own["allocated_by"]["connected"]);
    EXPECT_EQ(listing["total_bytes"], 64 * 1024 + 4096);

    const CommandResult text = ctl_buffers(daemon);
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, HasSubstr("(gone)"));
    EXPECT_THAT(text.out, HasSubstr("\ntotal  2 buffers"));
    release.raise();
    EXPECT_EQ(child.wait(), 0);
}

TEST(Buffers, AUserListsOnlyTheBuffersOfItsOwnUidWhileRootListsEvery)
{
    OpenDaemon open;
    Signal ready, release;
    ChildProcess holder([&] {
        release.close_write_end();
        if (!become_user(2001))
            return kUserChange;
        auto client = open.daemon().connect("holder");
        if (!client.allocate({.size = 8192}))
            return kOtherFailure;
        ready.raise();
        release.wait();
        return 0;
    });
    ASSERT_TRUE(ready.wait()) << "the holder failed with " << holder.wait();

    // Exit status: how many buffers uid 2002 sees, its own one among them.
    ChildProcess stranger([&] {
        if (!become_user(2002))
            return kUserChange;
        auto client = open.daemon().connect("stranger");
        if (!client.allocate({.size = 4096}))
            return kOtherFailure;
        auto buffers = client.list_buffers();
        if (!buffers)
            return kOtherFailure;
        const bool all_its_own = std::all_of(buffers->begin(), buffers->end(),
                                             [](const auto &buffer) { return buffer.allocated_by.uid == 2002; });
        return all_its_own ? static_cast<int>(buffers->size()) : kOtherFailure;
    });
    EXPECT_EQ(stranger.wait(), 1) << "uid 2002 saw more than its own buffer";

    auto everything = open.observer().list_buffers();
    ASSERT_TRUE(everything) << everything.error().message;
    ASSERT_EQ(everything->size(), 1u) << "the stranger's buffer left with it; the holder's stays";
    EXPECT_EQ(everything->front().allocated_by.uid, 2001u);
    EXPECT_EQ(everything->front().size, 8192u);
    release.raise();
    EXPECT_EQ(holder.wait(), 0);
}

TEST(Buffers, SixHundredBuffersComeBackWholeOverSeveralPages)
{
    DaemonProcess daemon;
    auto client = daemon.connect("many");
    for (int batch = 0; batch < 10; ++batch)
        ASSERT_TRUE(client.allocate({.size = 4096, .count = 60}));
    auto buffers = client.list_buffers();
    ASSERT_TRUE(buffers) << buffers.error().message;
    std::set<std::uint64_t> ids;
    for (const auto &buffer : *buffers)
        ids.insert(buffer.id);
    EXPECT_EQ(buffers->size(), 600u);
    EXPECT_EQ(ids.size(), 600u) << "a buffer came twice";
}

TEST(Buffers, AFilterOfPidAndHeapNarrowsTheListAndAnUnknownHeapIsNamed)
{
    DaemonProcess daemon;
    auto client = daemon.connect("filtered");
    ASSERT_TRUE(client.allocate({.size = 4096, .count = 2}));
    const CommandResult mine = ctl_buffers(daemon, {"--pid", std::to_string(::getpid()), "--heap", "system", "--json"});
    ASSERT_EQ(mine.exit_code, 0) << mine.err;
    EXPECT_EQ(json::parse(mine.out)["total_buffers"], 2);
    const CommandResult other = ctl_buffers(daemon, {"--pid", "1", "--json"});
    EXPECT_EQ(json::parse(other.out)["total_buffers"], 0);

    const CommandResult unknown = ctl_buffers(daemon, {"--heap", "carveout"});
    EXPECT_EQ(unknown.exit_code, 1);
    EXPECT_THAT(unknown.err, HasSubstr("INVALID_ARGUMENT: no heap or alias is named \"carveout\""));
    EXPECT_THAT(unknown.err, HasSubstr("memfd"));
}

} // namespace
} // namespace ionsvc::testing
