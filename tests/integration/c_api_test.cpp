// SPDX-License-Identifier: MIT
// libbufclient's C API, from a program compiled as C11 (c_client.c),
// against the real daemon.
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

TEST(CApi, AC11ProgramAllocatesMapsSharesImportsRevokesAndSeesItselfInStats)
{
    DaemonProcess daemon;
    const CommandResult result = run_command({IONSVC_C_CLIENT_PATH, daemon.socket_path(), "tour"});
    ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.out, HasSubstr("allocated buffers 1 and 2 from heap memfd"));
    EXPECT_THAT(result.out, HasSubstr("the peer imported buffer 1 and read what was written"));
    EXPECT_THAT(result.out, HasSubstr("a revoked token imports nothing: "));
    EXPECT_THAT(result.out, HasSubstr("c-client holding 2 buffers"));

    // Everything it freed left the books.
    auto observer = daemon.connect("observer");
    EXPECT_TRUE(eventually([&] {
        auto stats = observer.stats();
        return stats && stats->heaps.at(0).total_buffers == 0;
    }));
}

TEST(CApi, ARefusalIsItsStatusWithTheDaemonsMessage)
{
    TemporaryDirectory directory;
    const std::string config = directory.path() + "/ionsvc.conf";
    std::ofstream(config) << "[quota]\nclient = { bytes = \"1M\" }\n";
    DaemonProcess daemon({"--config", config});
    const CommandResult result = run_command({IONSVC_C_CLIENT_PATH, daemon.socket_path(), "refused"});
    ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
    EXPECT_THAT(result.out, HasSubstr("QUOTA_EXCEEDED: quota exceeded: this client holds 0 bytes"));
    EXPECT_THAT(result.out, HasSubstr("(quota.client)"));
    EXPECT_THAT(result.out, HasSubstr("NO_SUCH_HEAP: no heap named 'nope'"));
    EXPECT_THAT(result.out, HasSubstr("no client: client is NULL"));
    EXPECT_THAT(result.out, HasSubstr("no daemon: cannot connect to ionsvcd at /nonexistent/ionsvc.sock"));
}

} // namespace
} // namespace ionsvc::testing
