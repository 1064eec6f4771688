// SPDX-License-Identifier: MIT
// libionsvc-compat on a real kernel: a program written against the kernel's
// uapi alone (tests/integration/compat_client.c), run under ionsvc-run as
// nobody, who cannot open the device nodes, gets real dma-bufs from the
// daemon: the test importer module reads what the program wrote, and the
// daemon's stats show the buffer under the program's pid.
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_e2e.h"

namespace ionsvc::vmtest {
namespace {

constexpr std::size_t kSize = 65536;

// compat_client's pattern.
std::byte pattern_at(std::size_t offset)
{
    return static_cast<std::byte>((offset * 13 + 5) & 0xff);
}

class CompatOnRealHeaps : public DaemonTest
{
protected:
    // Runs `compat_client hold device` as nobody under ionsvc-run, with
    // the parent's end of the socket at fd 3 of the program.
    harness::ChildProcess hold(const std::string &device, UniqueFD &parent)
    {
        int ends[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends), 0);
        parent = UniqueFD{ends[0]};
        UniqueFD child_end{ends[1]};
        const std::string socket = "IONSVC_SOCKET=" + socket_path();
        harness::ChildProcess child([&] {
            if (!become(nobody(), "compat_client").empty() || ::dup2(child_end.get(), 3) != 3)
                return 10;
            ::execl("/usr/bin/env", "env", socket.c_str(), IONSVC_RUN_PATH, IONSVC_COMPAT_CLIENT_PATH, "hold",
                    device.c_str(), static_cast<char *>(nullptr));
            return 11;
        });
        return child;
    }
};

TEST_F(CompatOnRealHeaps, AnUnprivilegedProgramOfTheKernelUapiGetsRealDmaBufsThroughTheDaemon)
{
    const auto expected = expectations_for(kernel_series());
    ASSERT_TRUE(expected);
    std::vector<std::string> devices = {"ion"};
    if (expected->has_dma_heap)
        devices.push_back("dma-heap");
    auto importer = open_importer();
    ASSERT_EQ(importer.error, kSuccess) << "/dev/ion_test_importer";

    for (const std::string &device : devices) {
        SCOPED_TRACE(device);
        UniqueFD parent;
        harness::ChildProcess child = hold(device, parent);
        const Channel channel{std::move(parent)};
        Channel::Message message = channel.receive();
        ASSERT_EQ(message.error, "") << "the program failed: exit " << child.wait();
        ASSERT_EQ(message.text, "holding");
        ASSERT_EQ(message.fds.size(), 1u);
        const int buffer = message.fds[0].get();

        // A dma-buf, which a device reads as the program wrote it.
        EXPECT_TRUE(fdinfo_field(::getpid(), buffer, "exp_name")) << "not a dma-buf";
        std::vector<std::byte> seen(kSize);
        const auto read = importer_read(importer.fd.get(), buffer, 0, seen);
        ASSERT_EQ(read.error, kSuccess);
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < kSize; ++i)
            wrong += seen[i] != pattern_at(i);
        EXPECT_EQ(wrong, 0u) << "bytes the importer read differently from what the program wrote";

        // In the daemon's books, under the program's own pid and comm.
        const json stats = stats_json();
        const json pids = stats.value("pids", json::array());
        const json *entry = find_by(pids, "pid", child.pid());
        ASSERT_NE(entry, nullptr) << stats.dump(2);
        EXPECT_EQ(entry->value("comm", ""), "compat_client");
        EXPECT_EQ(entry->value("buffers", 0), 1);
        EXPECT_EQ(entry->value("bytes", 0u), kSize);

        EXPECT_EQ(channel.send("done"), "");
        EXPECT_EQ(child.wait(), 0);
    }
}

} // namespace
} // namespace ionsvc::vmtest
