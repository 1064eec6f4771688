// SPDX-License-Identifier: MIT
// Heap names, aliases and the config file, against the real daemon.
#include <sysexits.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string write_config(const TemporaryDirectory &directory, const std::string &text)
{
    const std::string path = directory.path() + "/ionsvc.conf";
    std::ofstream(path) << text;
    return path;
}

TEST(HeapRegistry, AnAliasFromTheConfigLeadsToItsHeapAndTheReplySaysWhich)
{
    TemporaryDirectory config_directory;
    DaemonProcess daemon({"--config", write_config(config_directory, "[aliases]\nscratch = [\"dma-heap:none\", \"memfd\"]\n")});
    auto client = daemon.connect();
    for (const std::string heap : {"scratch", "system", ""}) {
        SCOPED_TRACE(heap);
        auto buffers = client.allocate({.heap = heap, .size = 4096});
        ASSERT_TRUE(buffers) << buffers.error().message;
        EXPECT_EQ(buffers->front().heap(), "memfd");
    }
    EXPECT_THAT(daemon.log(), HasSubstr("alias 'scratch' -> memfd"));
}

TEST(HeapRegistry, HeapsListsEachHeapsAliases)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps) << heaps.error().message;
    ASSERT_EQ(heaps->size(), 1u);
    EXPECT_THAT(heaps->front().aliases, ElementsAre("system"));

    const CommandResult ctl = run_command({ionsvc_ctl_path(), "--socket", daemon.socket_path(), "heaps"});
    EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
    EXPECT_THAT(ctl.out, HasSubstr("ALIASES"));
    EXPECT_THAT(ctl.out, HasSubstr("ION_ID"));
    EXPECT_THAT(ctl.out, HasSubstr("memfd    system       -  system"));
}

TEST(HeapRegistry, AHeapOfABackendNotConfiguredIsNoHeapAndTheMessageSaysWhyAndNamesWhatExists)
{
    DaemonProcess daemon; // --backend memfd
    auto client = daemon.connect();
    const std::pair<std::string, std::string> heaps[] = {
        {"ion:ion_system_heap", "ion"}, {"dma-heap:system", "dma-heap"}, {"udmabuf", "udmabuf"}};
    for (const auto &[heap, backend] : heaps) {
        SCOPED_TRACE(heap);
        auto buffers = client.allocate({.heap = heap, .size = 4096});
        ASSERT_FALSE(buffers);
        EXPECT_EQ(buffers.error().code, StatusCode::kNoSuchHeap);
        EXPECT_EQ(buffers.error().message, "no heap named '" + heap + "'; backend " + backend +
                                               " is not served: not chosen (--backend memfd); this "
                                               "daemon serves: memfd (aliases: system)");
    }
}

TEST(HeapRegistry, AnUnknownHeapOfABackendThatIsServedNamesNoReason)
{
    DaemonProcess daemon; // --backend memfd
    auto client = daemon.connect();
    auto buffers = client.allocate({.heap = "memfd2", .size = 4096});
    ASSERT_FALSE(buffers);
    EXPECT_EQ(buffers.error().message, "no heap named 'memfd2'; this daemon serves: memfd (aliases: system)");
}

TEST(HeapRegistry, AnIonMaskOnADaemonWithoutIonIsNoHeapAndSaysSo)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 4096, .ion_heap_id_mask = 0b1});
    ASSERT_FALSE(buffers);
    EXPECT_EQ(buffers.error().code, StatusCode::kNoSuchHeap);
    EXPECT_EQ(buffers.error().message, "no ion heap in ion_heap_id_mask 0x1; this daemon's ion heaps: none");
    EXPECT_TRUE(client.allocate({.size = 4096})) << "the daemon keeps serving";
}

TEST(HeapRegistry, AnAliasThatLeadsNowhereIsNoHeapAndTheMessageSaysWhyAndNamesWhatExists)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.heap = "contig", .size = 4096});
    ASSERT_FALSE(buffers);
    EXPECT_EQ(buffers.error().code, StatusCode::kNoSuchHeap);
    // Only the backends its candidates need, each with why it is not here.
    EXPECT_EQ(buffers.error().message,
              "no heap named 'contig'; alias 'contig' leads nowhere: none of ion-type:system_contig, "
              "dma-heap:default_cma_region, dma-heap:linux,cma, dma-heap:reserved is here; backend ion is not served: not chosen "
              "(--backend memfd); backend dma-heap is not served: not chosen (--backend memfd); this daemon "
              "serves: memfd (aliases: system)");
    EXPECT_THAT(daemon.log(), HasSubstr("alias 'contig' leads nowhere"));
}

TEST(HeapRegistry, ABrokenConfigStopsTheDaemonWithTheFileAndLine)
{
    TemporaryDirectory directory;
    const std::string path = write_config(directory, "[aliases]\nsystem = [\"memfd\"]\n\n[quotas]\n");
    const CommandResult result = run_command({ionsvcd_path(), "--socket", directory.path() + "/s.sock",
                                              "--backend", "memfd", "--config", path});
    EXPECT_EQ(result.exit_code, EX_CONFIG) << "78: systemd's RestartPreventExitStatus= can stop retrying";
    EXPECT_THAT(result.err, HasSubstr(path + ":4:2: unknown setting 'quotas'"));
}

TEST(HeapRegistry, AConfigPathThatDoesNotExistStopsTheDaemon)
{
    TemporaryDirectory directory;
    const CommandResult result = run_command({ionsvcd_path(), "--socket", directory.path() + "/s.sock",
                                              "--backend", "memfd", "--config", directory.path() + "/none.conf"});
    EXPECT_EQ(result.exit_code, EX_CONFIG);
    EXPECT_THAT(result.err, HasSubstr("none.conf: No such file or directory"));
}

} // namespace
} // namespace ionsvc::testing
