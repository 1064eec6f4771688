// SPDX-License-Identifier: MIT
// libionsvc-compat on the host (the memfd backend): a program written
// against the kernel's uapi alone (compat_client.c), run under ionsvc-run,
// gets its dma-heap and ION buffers from the real daemon.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// compat_client under ionsvc-run, talking to the daemon at socket.
CommandResult run_compat(const std::string &socket, std::vector<std::string> arguments)
{
    std::vector<std::string> command = {"/usr/bin/env", "IONSVC_SOCKET=" + socket};
    if (const std::string first = IONSVC_TEST_PRELOAD; !first.empty())
        command.push_back("LD_PRELOAD=" + first);
    command.insert(command.end(), {IONSVC_RUN_PATH, IONSVC_COMPAT_CLIENT_PATH});
    command.insert(command.end(), arguments.begin(), arguments.end());
    return run_command(command);
}

TEST(Compat, AProgramOfTheDmaHeapUapiAllocatesSharesAndSeesItsBufferUnderItsOwnPid)
{
    DaemonProcess daemon;
    const CommandResult result = run_compat(daemon.socket_path(), {"dma-heap", ionsvc_ctl_path()});
    ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.out, HasSubstr("allocated 65536 bytes from /dev/dma_heap/system"));
    EXPECT_THAT(result.out, HasSubstr("another process read all 65536 bytes through the fd alone"));
    // ionsvc-ctl stats --pid of the program itself: its buffer, its comm.
    EXPECT_THAT(result.out, ::testing::ContainsRegex("[0-9]+  compat_client +[0-9]+ +1  memfd +1  65536"));
    // The forked child's own buffer, under its own pid.
    EXPECT_THAT(result.out, ::testing::ContainsRegex("[0-9]+  compat_client +[0-9]+ +1  memfd +1   8192"));
    EXPECT_THAT(result.out, HasSubstr("a forked child allocated through the inherited heap fd"));
    EXPECT_THAT(result.out, HasSubstr("refusals are the kernel's"));
    EXPECT_THAT(result.out, HasSubstr("other opens are libc's, with their mode"));
    EXPECT_EQ(result.err, "");
}

TEST(Compat, AProgramOfTheIonUapiQueriesHeapsAndAllocatesByMask)
{
    DaemonProcess daemon;
    const CommandResult result = run_compat(daemon.socket_path(), {"ion", ionsvc_ctl_path()});
    ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
    // No ION heap on memfd: the system alias, as ION's system heap.
    EXPECT_THAT(result.out, HasSubstr("ION heaps: 1, the first 'system' (type 0, id 0)"));
    EXPECT_THAT(result.out, HasSubstr("another process read all 65536 bytes"));
    EXPECT_THAT(result.out, ::testing::ContainsRegex("[0-9]+  compat_client +[0-9]+ +1  memfd +1  65536"));
    EXPECT_THAT(result.out, HasSubstr("refusals are ION's"));
}

TEST(Compat, ThreadsAllocateAtOnceOverTheProcesssOneConnection)
{
    DaemonProcess daemon;
    const CommandResult result = run_compat(daemon.socket_path(), {"threads"});
    EXPECT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.out, HasSubstr("4 threads allocated 16 buffers each"));
    // All of them on one connection: the daemon saw the program connect once.
    std::size_t connects = 0;
    std::istringstream log(daemon.log());
    for (std::string line; std::getline(log, line);)
        connects += line.find(" connected: ") != std::string::npos && line.find("'compat_client'") != std::string::npos;
    EXPECT_EQ(connects, 1u) << daemon.log();
}

TEST(Compat, AnAllocationPastTheQuotaIsEnomem)
{
    TemporaryDirectory directory;
    const std::string config = directory.path() + "/ionsvc.conf";
    std::ofstream(config) << "[quota]\nclient = { bytes = \"1M\" }\n";
    DaemonProcess daemon({"--config", config});
    const CommandResult result = run_compat(daemon.socket_path(), {"quota"});
    EXPECT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.out, HasSubstr("past the quota: ENOMEM"));
}

TEST(Compat, AHeapTheDaemonCannotServeIsEnoent)
{
    DaemonProcess daemon;
    const CommandResult result = run_compat(daemon.socket_path(), {"missing"});
    EXPECT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_EQ(result.err, "");
}

TEST(Compat, WithoutADaemonTheKernelsNodeIsTriedAndALineSaysWhy)
{
    const CommandResult result = run_compat("/nonexistent/ionsvc.sock", {"missing"});
    EXPECT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.err, HasSubstr("ionsvc-compat: /dev/dma_heap/no_such_heap: ionsvcd cannot be reached "
                                      "(IONSVC_SOCKET), and the node: No such file or directory"));
}

} // namespace
} // namespace ionsvc::testing
