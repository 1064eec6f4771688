// SPDX-License-Identifier: MIT
// The warm pool against the real daemon: configured in its file, shown by
// ionsvc-ctl, handed out to clients, changed and emptied by a reload.
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kMiB = 1 << 20;

// Three 1 MiB buffers ready, whatever the machine has free.
constexpr const char *kThreeMebibytes = "[pool]\nmin_available = 0\n[pool.heaps.memfd]\n\"1M\" = 3\n";

class WarmPool : public ::testing::Test
{
protected:
    std::string config_path() const { return config_directory_.path() + "/ionsvc.conf"; }
    void write_config(const std::string &text) const { std::ofstream(config_path()) << text; }

    void start(const std::string &config)
    {
        write_config(config);
        daemon_.emplace(std::vector<std::string>{"--config", config_path()});
        client_.emplace(daemon_->connect("pool-test"));
    }

    void reload(const std::string &config)
    {
        write_config(config);
        ASSERT_TRUE(daemon_->reload()) << daemon_->log();
    }

    // The memfd heap's pool, as `ionsvc-ctl heaps` reports it.
    std::pair<std::uint64_t, std::uint64_t> pool_of_memfd()
    {
        auto heaps = client_->list_heaps();
        EXPECT_TRUE(heaps) << heaps.error().message;
        if (heaps) {
            for (const bufclient::HeapInfo &heap : *heaps) {
                if (heap.name == "memfd")
                    return {heap.pool_buffers, heap.pool_bytes};
            }
        }
        return {~0ull, ~0ull};
    }

    // The daemon's fds of pool memfds (named so for good). Not its fd
    // count: the refill thread opens /proc/meminfo now and then.
    std::size_t pool_fds() const
    {
        std::size_t count = 0;
        const std::filesystem::path directory = "/proc/" + std::to_string(daemon_->pid()) + "/fd";
        for (const auto &entry : std::filesystem::directory_iterator(directory)) {
            std::error_code error;
            const auto target = std::filesystem::read_symlink(entry.path(), error);
            count += !error && target.string().starts_with("/memfd:ionsvc-pool");
        }
        return count;
    }

    bool pool_holds(std::uint64_t buffers)
    {
        return eventually([&] { return pool_of_memfd() == std::make_pair(buffers, buffers * kMiB); });
    }

    bufclient::Buffer allocate(std::uint64_t size)
    {
        auto buffers = client_->allocate({.heap = "memfd", .size = size});
        EXPECT_TRUE(buffers) << buffers.error().message;
        if (!buffers)
            std::abort();
        return std::move(buffers->front());
    }

    TemporaryDirectory config_directory_;
    std::optional<DaemonProcess> daemon_;
    std::optional<bufclient::Client> client_;
};

TEST_F(WarmPool, FillsAsConfiguredAndIonsvcCtlShowsIt)
{
    start(kThreeMebibytes);
    ASSERT_TRUE(pool_holds(3));
    EXPECT_THAT(daemon_->log(), HasSubstr("warm pool: 3 buffers of 1048576 bytes ready in heap 'memfd'"));

    const CommandResult json = run_command({ionsvc_ctl_path(), "--socket", daemon_->socket_path(), "heaps", "--json"});
    ASSERT_EQ(json.exit_code, 0) << json.err;
    const nlohmann::json heap = nlohmann::json::parse(json.out).at("heaps").at(0);
    EXPECT_EQ(heap.at("name"), "memfd");
    EXPECT_EQ(heap.at("pool_buffers"), 3);
    EXPECT_EQ(heap.at("pool_bytes"), 3 * kMiB);
    EXPECT_EQ(heap.at("live_bytes"), 0) << "pool memory is charged to nobody";

    const CommandResult table = run_command({ionsvc_ctl_path(), "--socket", daemon_->socket_path(), "heaps"});
    ASSERT_EQ(table.exit_code, 0) << table.err;
    EXPECT_THAT(table.out, HasSubstr("POOL_SIZE"));
    EXPECT_THAT(table.out, HasSubstr("3.0MiB"));

    const CommandResult view = run_command(
        {ionsvc_ctl_path(), "--socket", daemon_->socket_path(), "stats", "--view", "heaps"});
    ASSERT_EQ(view.exit_code, 0) << view.err;
    EXPECT_THAT(view.out, HasSubstr("      total pool          3145728\n"));
}

TEST_F(WarmPool, AnAllocationOfAPooledSizeGetsAPopulatedBufferFromIt)
{
    start(kThreeMebibytes);
    ASSERT_TRUE(pool_holds(3));

    const bufclient::Buffer buffer = allocate(kMiB);
    EXPECT_TRUE(buffer.from_pool());
    struct stat status{};
    ASSERT_EQ(::fstat(buffer.fd(), &status), 0);
    EXPECT_EQ(status.st_size, static_cast<off_t>(kMiB));
    EXPECT_GE(static_cast<std::uint64_t>(status.st_blocks) * 512, kMiB) << "every page is there already";

    // It is the client's now, in the books like any other; another size is
    // made on request.
    auto stats = client_->stats(::getpid());
    ASSERT_TRUE(stats);
    ASSERT_EQ(stats->clients.size(), 1u);
    EXPECT_EQ(stats->clients[0].heaps.at(0).bytes, kMiB);
    EXPECT_FALSE(allocate(2 * kMiB).from_pool());
    // And the pool makes up for what it gave.
    EXPECT_TRUE(pool_holds(3));
}

TEST_F(WarmPool, NeverHandsOutABufferThatAClientHadBefore)
{
    start(kThreeMebibytes);
    ASSERT_TRUE(pool_holds(3));

    std::set<ino_t> seen;
    for (int round = 0; round < 6; ++round) {
        ASSERT_TRUE(pool_holds(3));
        bufclient::Buffer buffer = allocate(kMiB);
        ASSERT_TRUE(buffer.from_pool());
        struct stat status{};
        ASSERT_EQ(::fstat(buffer.fd(), &status), 0);
        EXPECT_TRUE(seen.insert(status.st_ino).second) << "buffer " << status.st_ino << " came back";

        auto mapping = buffer.map();
        ASSERT_TRUE(mapping) << mapping.error().message;
        auto *bytes = static_cast<unsigned char *>(mapping->data());
        EXPECT_EQ(std::count(bytes, bytes + kMiB, 0), static_cast<std::ptrdiff_t>(kMiB)) << "round " << round;
        // What this client leaves in it must never reach the next one.
        std::memset(bytes, 0xa5, kMiB);
        ASSERT_TRUE(client_->free(buffer));
    }
}

TEST_F(WarmPool, AReloadResizesItAndAThresholdAboveWhatTheMachineHasEmptiesIt)
{
    start(kThreeMebibytes);
    ASSERT_TRUE(pool_holds(3));
    EXPECT_EQ(pool_fds(), 3u);

    reload("[pool]\nmin_available = 0\n[pool.heaps.memfd]\n\"1M\" = 1\n");
    EXPECT_TRUE(pool_holds(1));
    EXPECT_EQ(pool_fds(), 1u) << "the buffers it no longer wants are closed";

    // No machine here has a pebibyte free.
    reload("[pool]\nmin_available = \"1024T\"\n[pool.heaps.memfd]\n\"1M\" = 3\n");
    EXPECT_TRUE(pool_holds(0));
    EXPECT_TRUE(eventually([&] { return daemon_->log().find("below pool.min_available") != std::string::npos; }));
    const bufclient::Buffer direct = allocate(kMiB);
    EXPECT_FALSE(direct.from_pool()) << "an empty pool leaves allocations to the heap";

    reload(kThreeMebibytes);
    EXPECT_TRUE(pool_holds(3));
}

TEST_F(WarmPool, AClassOfAHeapThatIsNotServedIsNamedInTheLog)
{
    start("[pool.heaps.\"ion:ion_system_heap\"]\n\"1M\" = 2\n");
    EXPECT_THAT(daemon_->log(), HasSubstr("pool.heaps.ion:ion_system_heap.1M: this daemon serves no heap "
                                          "'ion:ion_system_heap'; no pool for it (serving: memfd"));
    EXPECT_EQ(pool_of_memfd(), (std::pair<std::uint64_t, std::uint64_t>{0, 0}));
    EXPECT_FALSE(allocate(kMiB).from_pool());
}

} // namespace
} // namespace ionsvc::testing
