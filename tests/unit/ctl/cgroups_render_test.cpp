// SPDX-License-Identifier: MIT
// `ionsvc-ctl stats --view cgroups`: clients summed per cgroup, named by unit.
#include <gtest/gtest.h>

#include "render.h"

namespace ionsvc::ctl {
namespace {

bufclient::ClientStats client(std::uint64_t id, std::uint32_t pid, std::string cgroup, std::uint64_t bytes,
                              std::uint64_t shared = 0)
{
    bufclient::ClientStats stats;
    stats.client_id = id;
    stats.pid = pid;
    stats.cgroup = std::move(cgroup);
    stats.heaps = {{"memfd", bytes, 1, bytes, shared, shared ? 1u : 0u}};
    return stats;
}

bufclient::Stats sample_stats()
{
    bufclient::Stats stats;
    stats.clients = {
        client(1, 300, "/system.slice/camera.service", 4096),
        client(2, 300, "/system.slice/camera.service", 8192, 8192), // a second connection of the same pid
        client(3, 301, "/system.slice/camera.service/worker", 1 << 20),
        client(4, 400, "/user.slice/user-1000.slice/session-3.scope", 65536),
        client(5, 500, "", 4096), // a machine without the unified hierarchy
    };
    return stats;
}

TEST(SystemdUnitOf, IsTheDeepestComponentThatNamesAUnit)
{
    EXPECT_EQ(systemd_unit_of("/system.slice/camera.service"), "camera.service");
    EXPECT_EQ(systemd_unit_of("/system.slice/camera.service/worker"), "camera.service");
    EXPECT_EQ(systemd_unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/app-x.scope"), "app-x.scope");
    EXPECT_EQ(systemd_unit_of("/machine.slice"), "machine.slice");
    EXPECT_EQ(systemd_unit_of("/docker/4f1c"), "");
    EXPECT_EQ(systemd_unit_of("/"), "");
    EXPECT_EQ(systemd_unit_of("/.service"), "") << "a suffix alone names nothing";
}

TEST(CgroupsView, SumsTheClientsOfEachCgroupAndCountsEachPidOnce)
{
    const std::vector<CgroupStats> cgroups = aggregate_by_cgroup(sample_stats());
    ASSERT_EQ(cgroups.size(), 4u);
    EXPECT_EQ(cgroups[0].cgroup, "");
    EXPECT_EQ(cgroups[1].cgroup, "/system.slice/camera.service");
    EXPECT_EQ(cgroups[1].pids, 1u);
    EXPECT_EQ(cgroups[1].clients, 2u);
    EXPECT_EQ(cgroups[1].bytes, 4096u + 8192u);
    EXPECT_EQ(cgroups[1].shared_bytes, 8192u);
    EXPECT_EQ(cgroups[2].unit, "camera.service");
}

TEST(CgroupsView, IsATableSortedByPathWithTheUnitAndATotal)
{
    EXPECT_EQ(render_cgroups_table(sample_stats()),
              "CGROUP                                       UNIT             PIDS  CLIENTS  BUFFERS    BYTES     SIZE  SHARED\n"
              "?                                            -                   1        1        1     4096   4.0KiB       0\n"
              "/system.slice/camera.service                 camera.service      1        2        2    12288  12.0KiB    8192\n"
              "/system.slice/camera.service/worker          camera.service      1        1        1  1048576   1.0MiB       0\n"
              "/user.slice/user-1000.slice/session-3.scope  session-3.scope     1        1        1    65536  64.0KiB       0\n"
              "total                                                            4        5        5  1130496   1.1MiB    8192\n");
}

TEST(CgroupsJson, HasTheDocumentedFieldsAndNullForNoUnit)
{
    const nlohmann::json json = cgroups_to_json(sample_stats());
    ASSERT_EQ(json.size(), 4u);
    EXPECT_EQ(json[0]["unit"], nullptr);
    EXPECT_EQ(json[1], nlohmann::json::parse(R"({"cgroup": "/system.slice/camera.service", "unit": "camera.service",
        "pids": 1, "clients": 2, "buffers": 2, "bytes": 12288, "shared_bytes": 8192})"));
    EXPECT_EQ(stats_to_json(sample_stats())["clients"][0]["cgroup"], "/system.slice/camera.service");
}

} // namespace
} // namespace ionsvc::ctl
