// SPDX-License-Identifier: MIT
// ionsvc-ctl's renderers against golden text written out by hand. The ION
// views must match Android ION's debugfs files byte for byte, so their
// expected text is spelled out space by space rather than derived.
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "render.h"

namespace ionsvc::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Three clients (two of them one process), two heaps, one orphan. The
// second heap's name is longer than 16 characters (ION's clients file cuts
// it), the third client's comm too (ION's heaps file does not).
bufclient::Stats sample_stats()
{
    bufclient::Stats stats;
    stats.clients = {
        // One of the preview client's system buffers was imported by the
        // capture client of the same process: shared, counted in both.
        {1, 100, 1000, 1000, "camera.provider", "preview", {{"system", 8192, 2, 12288, 4096, 1}}},
        {2,
         100,
         1000,
         1000,
         "camera.provider",
         "capture",
         {{"system", 4096, 1, 4096, 4096, 1}, {"camera_secure_carveout", 1048576, 1, 1048576}}},
        {3,
         2345,
         1001,
         1001,
         "surfaceflinger-renderer",
         "sf",
         {{"system", 0, 0, 4096}, {"camera_secure_carveout", 65536, 1, 65536}}},
    };
    stats.heaps = {
        // 8192 (the shared buffer once) + the orphan's 16384.
        {"system", "memfd", "system", 24576, 3, {{"mediaserver", 77, 16384, 1, 2}}},
        {"camera_secure_carveout", "memfd", "carveout", 1114112, 2, {}},
    };
    return stats;
}

std::vector<std::string> lines_of(const std::string &text)
{
    std::vector<std::string> lines;
    std::istringstream stream(text);
    for (std::string line; std::getline(stream, line);)
        lines.push_back(line);
    return lines;
}

// -------------------------------------------------------------------------
// The heaps view: ION's debugfs heaps/<heap>.

TEST(IonHeapsView, MatchesIonDebugfsLayoutByteForByte)
{
    // Every ION field is 16 wide, right-aligned, one space apart.
    const std::string expected = R"(==> heaps/system <==
          client              pid             size
----------------------------------------------------
 camera.provider              100             8192
 camera.provider              100             4096
----------------------------------------------------
orphaned allocations (info is from last known client):
     mediaserver               77            16384 1 2
----------------------------------------------------
  total orphaned            16384
          total             24576
----------------------------------------------------

==> heaps/camera_secure_carveout <==
          client              pid             size
----------------------------------------------------
 camera.provider              100          1048576
surfaceflinger-renderer             2345            65536
----------------------------------------------------
orphaned allocations (info is from last known client):
----------------------------------------------------
  total orphaned                0
          total           1114112
----------------------------------------------------
)";
    EXPECT_EQ(render_ion_heaps(sample_stats()), expected);
}

TEST(IonHeapsView, DashLinesAreExactlyFiftyTwoDashes)
{
    int dash_lines = 0;
    for (const std::string &line : lines_of(render_ion_heaps(sample_stats()))) {
        if (!line.empty() && line.front() == '-') {
            EXPECT_EQ(line, std::string(52, '-'));
            ++dash_lines;
        }
    }
    // Four per heap: under the header, above the orphans, above and under the totals.
    EXPECT_EQ(dash_lines, 8);
}

TEST(IonHeapsView, AHeapWithAWarmPoolShowsItsPoolUnderTheTotal)
{
    bufclient::Stats stats = sample_stats();
    stats.heaps.at(0).pool_bytes = 2097152;
    stats.heaps.at(0).pool_buffers = 2;
    const std::string text = render_ion_heaps(stats);
    EXPECT_THAT(text, HasSubstr("          total             24576\n"
                                "      total pool          2097152\n"
                                "----------------------------------------------------\n"));
    // Only the heap that has one.
    EXPECT_EQ(text.find("total pool"), text.rfind("total pool"));
}

TEST(IonHeapsView, TotalLineIsTotalWithTrailingSpaceRightAlignedAndNotDoubleCountingOrphans)
{
    const std::vector<std::string> lines = lines_of(render_ion_heaps(sample_stats()));
    // "%16s" of "total " is ten spaces and "total ", then the separator.
    EXPECT_NE(std::find(lines.begin(), lines.end(), std::string(10, ' ') + "total " + " " + std::string(11, ' ') + "24576"),
              lines.end());
    EXPECT_EQ(std::find(lines.begin(), lines.end(), std::string(10, ' ') + "total " + " " + std::string(11, ' ') + "40960"),
              lines.end());
}

TEST(IonHeapsView, SkipsClientsWithNoBytesInTheHeap)
{
    bufclient::Stats stats;
    stats.clients = {{7, 4242, 0, 0, "idle", "", {{"system", 0, 0, 1 << 20}}}};
    stats.heaps = {{"system", "memfd", "system", 0, 0, {}}};
    const std::string text = render_ion_heaps(stats);
    EXPECT_THAT(text, Not(HasSubstr("idle")));
    EXPECT_THAT(text, Not(HasSubstr("4242")));
    // Header and dashes straight into dashes: no client row.
    EXPECT_THAT(text, HasSubstr("             pid             size\n"
                                "----------------------------------------------------\n"
                                "----------------------------------------------------\n"));
}

TEST(IonHeapsView, ListsOrphansWithMapCountAndRefcountAndSumsThem)
{
    bufclient::Stats stats;
    stats.heaps = {{"system",
                    "memfd",
                    "system",
                    12288,
                    2,
                    {{"gralloc", 501, 4096, 0, 1}, {"a-very-long-command", 502, 8192, 3, -1}}}};
    const std::string text = render_ion_heaps(stats);
    EXPECT_THAT(text, HasSubstr("orphaned allocations (info is from last known client):\n"
                                "         gralloc              501             4096 0 1\n"
                                "a-very-long-command              502             8192 3 -1\n"
                                "----------------------------------------------------\n"
                                "  total orphaned            12288\n"
                                "          total             12288\n"));
}

TEST(IonHeapsView, IsEmptyWithoutHeaps)
{
    EXPECT_EQ(render_ion_heaps({}), "");
}

// -------------------------------------------------------------------------
// The clients view: ION's debugfs clients/<client>.

TEST(IonClientsView, MatchesIonDebugfsLayoutByteForByte)
{
    // "%16.16s" cuts camera_secure_carveout to its first 16 characters.
    const std::string expected = R"(==> clients/100-1 (camera.provider, "preview") <==
       heap_name:    size_in_bytes
          system:             8192

==> clients/100-2 (camera.provider, "capture") <==
       heap_name:    size_in_bytes
          system:             4096
camera_secure_ca:          1048576

==> clients/2345-3 (surfaceflinger-renderer, "sf") <==
       heap_name:    size_in_bytes
          system:                0
camera_secure_ca:            65536
)";
    EXPECT_EQ(render_ion_clients(sample_stats()), expected);
}

TEST(IonClientsView, ShowsOnlyTheHeaderForAClientThatNeverAllocated)
{
    bufclient::Stats stats;
    stats.clients = {{9, 31, 0, 0, "ionsvc-ctl", "ionsvc-ctl", {}}};
    EXPECT_EQ(render_ion_clients(stats), "==> clients/31-9 (ionsvc-ctl, \"ionsvc-ctl\") <==\n"
                                         "       heap_name:    size_in_bytes\n");
}

// -------------------------------------------------------------------------
// Per pid aggregation, shared by the pids table and the JSON.

TEST(PidAggregation, SumsTheConnectionsOfOnePidPerHeap)
{
    const std::vector<PidStats> pids = aggregate_by_pid(sample_stats());
    ASSERT_EQ(pids.size(), 2u);

    const PidStats &camera = pids[0];
    EXPECT_EQ(camera.pid, 100u);
    EXPECT_EQ(camera.comm, "camera.provider");
    EXPECT_EQ(camera.uid, 1000u);
    EXPECT_THAT(camera.client_ids, ElementsAre(1u, 2u));
    EXPECT_EQ(camera.bytes, 8192u + 4096u + 1048576u);
    EXPECT_EQ(camera.buffers, 4u);
    ASSERT_EQ(camera.heaps.size(), 2u);
    EXPECT_EQ(camera.heaps[0].heap, "system");
    EXPECT_EQ(camera.heaps[0].bytes, 12288u);
    EXPECT_EQ(camera.heaps[0].buffers, 3u);
    EXPECT_EQ(camera.heaps[0].peak_bytes, 12288u + 4096u);
    EXPECT_EQ(camera.heaps[1].heap, "camera_secure_carveout");
    EXPECT_EQ(camera.heaps[1].bytes, 1048576u);

    const PidStats &flinger = pids[1];
    EXPECT_EQ(flinger.pid, 2345u);
    EXPECT_THAT(flinger.client_ids, ElementsAre(3u));
    EXPECT_EQ(flinger.bytes, 65536u);
    EXPECT_EQ(flinger.buffers, 1u);
}

TEST(PidAggregation, SortsPidsAndFollowsTheDaemonsHeapOrder)
{
    bufclient::Stats stats;
    stats.clients = {
        {5, 900, 0, 0, "late", "", {{"b", 1, 1, 1}}},
        {6, 30, 0, 0, "early", "", {{"b", 2, 1, 2}}},
        {7, 30, 0, 0, "early", "", {{"a", 4, 1, 4}}},
    };
    stats.heaps = {{"a", "memfd", "system", 4, 1, {}}, {"b", "memfd", "system", 3, 2, {}}};
    const std::vector<PidStats> pids = aggregate_by_pid(stats);
    ASSERT_EQ(pids.size(), 2u);
    EXPECT_EQ(pids[0].pid, 30u);
    EXPECT_EQ(pids[1].pid, 900u);
    ASSERT_EQ(pids[0].heaps.size(), 2u);
    EXPECT_EQ(pids[0].heaps[0].heap, "a");
    EXPECT_EQ(pids[0].heaps[1].heap, "b");
}

TEST(PidAggregation, TakesCommAndUidFromThePidsFirstConnection)
{
    bufclient::Stats stats;
    // Listed out of order; client 3 connected first.
    stats.clients = {
        {8, 44, 2000, 0, "renamed", "", {}},
        {3, 44, 1000, 0, "original", "", {}},
    };
    const std::vector<PidStats> pids = aggregate_by_pid(stats);
    ASSERT_EQ(pids.size(), 1u);
    EXPECT_EQ(pids[0].comm, "original");
    EXPECT_EQ(pids[0].uid, 1000u);
    EXPECT_THAT(pids[0].client_ids, ElementsAre(3u, 8u));
}

// -------------------------------------------------------------------------
// The pids table.

TEST(PidsTable, HasOneAlignedRowPerPidAndHeapWithItsSharedBytesThenATotal)
{
    const std::string expected =
        "  PID  COMM                      UID  CLIENTS  HEAP                    BUFFERS    BYTES     SIZE  SHARED     PEAK\n"
        "  100  camera.provider          1000        2  system                        3    12288  12.0KiB    8192    16384\n"
        "  100  camera.provider          1000        2  camera_secure_carveout        1  1048576   1.0MiB       0  1048576\n"
        " 2345  surfaceflinger-renderer  1001        1  system                        0        0       0B       0     4096\n"
        " 2345  surfaceflinger-renderer  1001        1  camera_secure_carveout        1    65536  64.0KiB       0    65536\n"
        "total                                       3                                5  1126400   1.1MiB    8192\n"
        "orphaned buffers: 1, bytes: 16384 (no live client; see --view heaps)\n";
    EXPECT_EQ(render_pids_table(sample_stats()), expected);
}

TEST(PidsTable, ShowsAConnectedPidWithoutBuffersWithHeapDash)
{
    bufclient::Stats stats;
    stats.clients = {{9, 31, 0, 0, "ionsvc-ctl", "ionsvc-ctl", {}}};
    EXPECT_EQ(render_pids_table(stats), "  PID  COMM        UID  CLIENTS  HEAP  BUFFERS  BYTES  SIZE  SHARED  PEAK\n"
                                        "   31  ionsvc-ctl    0        1  -           0      0    0B       0     0\n"
                                        "total                         1              0      0    0B       0\n");
}

TEST(PidsTable, HasOnlyHeaderAndZeroTotalWithoutClients)
{
    EXPECT_EQ(render_pids_table({}), "  PID  COMM  UID  CLIENTS  HEAP  BUFFERS  BYTES  SIZE  SHARED  PEAK\n"
                                     "total                   0              0      0    0B       0\n");
}

TEST(LimitsTable, ShowsEachLimitWithItsUseAndBytesForHumans)
{
    const std::vector<bufclient::LimitUsage> limits = {
        {"quota.uid", "uid 1000", "bytes", 3 << 20, 1ull << 30},
        {"quota.uid", "uid 1000", "buffers", 3, 256},
        {"connections.per_uid", "uid 1000", "connections", 2, 64},
    };
    EXPECT_EQ(render_limits(limits), "\nlimits that hold for this client:\n"
                                     "LIMIT                SCOPE       USED      OF  UNIT\n"
                                     "quota.uid            uid 1000  3.0MiB  1.0GiB  bytes\n"
                                     "quota.uid            uid 1000       3     256  buffers\n"
                                     "connections.per_uid  uid 1000       2      64  connections\n");
}

TEST(LimitsTable, IsNothingWhenNoLimitHolds)
{
    EXPECT_EQ(render_limits({}), "");
}

TEST(LimitsJson, HasTheDocumentedFields)
{
    EXPECT_EQ(limits_to_json({{"quota.uid", "uid 1000", "buffers", 3, 256}}), nlohmann::json::parse(R"([
        {"setting": "quota.uid", "scope": "uid 1000", "unit": "buffers", "used": 3, "limit": 256}
    ])"));
}

// -------------------------------------------------------------------------
// JSON.

TEST(StatsJson, HasTheDocumentedFieldsAndValues)
{
    const nlohmann::json json = stats_to_json(sample_stats());

    ASSERT_EQ(json.at("clients").size(), 3u);
    const nlohmann::json &capture = json.at("clients").at(1);
    EXPECT_EQ(capture.at("client_id"), 2);
    EXPECT_EQ(capture.at("pid"), 100);
    EXPECT_EQ(capture.at("uid"), 1000);
    EXPECT_EQ(capture.at("gid"), 1000);
    EXPECT_EQ(capture.at("comm"), "camera.provider");
    EXPECT_EQ(capture.at("name"), "capture");
    EXPECT_EQ(capture.at("bytes"), 4096 + 1048576);
    EXPECT_EQ(capture.at("buffers"), 2);
    EXPECT_EQ(capture.at("heaps"), nlohmann::json::parse(R"([
        {"heap": "system", "bytes": 4096, "buffers": 1, "peak_bytes": 4096,
         "shared_bytes": 4096, "shared_buffers": 1},
        {"heap": "camera_secure_carveout", "bytes": 1048576, "buffers": 1, "peak_bytes": 1048576,
         "shared_bytes": 0, "shared_buffers": 0}
    ])"));

    EXPECT_EQ(json.at("heaps"), nlohmann::json::parse(R"([
        {"name": "system", "backend": "memfd", "type": "system", "live_bytes": 24576, "live_buffers": 3,
         "orphaned": [{"comm": "mediaserver", "pid": 77, "size": 16384, "map_count": 1, "refcount": 2}],
         "orphaned_bytes": 16384, "pool_bytes": 0, "pool_buffers": 0},
        {"name": "camera_secure_carveout", "backend": "memfd", "type": "carveout", "live_bytes": 1114112,
         "live_buffers": 2, "orphaned": [], "orphaned_bytes": 0, "pool_bytes": 0, "pool_buffers": 0}
    ])"));

    EXPECT_EQ(json.at("pids"), nlohmann::json::parse(R"([
        {"pid": 100, "comm": "camera.provider", "uid": 1000, "clients": 2, "client_ids": [1, 2],
         "bytes": 1060864, "buffers": 4, "shared_bytes": 8192,
         "heaps": [{"heap": "system", "bytes": 12288, "buffers": 3, "peak_bytes": 16384,
                    "shared_bytes": 8192, "shared_buffers": 2},
                   {"heap": "camera_secure_carveout", "bytes": 1048576, "buffers": 1, "peak_bytes": 1048576,
                    "shared_bytes": 0, "shared_buffers": 0}]},
        {"pid": 2345, "comm": "surfaceflinger-renderer", "uid": 1001, "clients": 1, "client_ids": [3],
         "bytes": 65536, "buffers": 1, "shared_bytes": 0,
         "heaps": [{"heap": "system", "bytes": 0, "buffers": 0, "peak_bytes": 4096,
                    "shared_bytes": 0, "shared_buffers": 0},
                   {"heap": "camera_secure_carveout", "bytes": 65536, "buffers": 1, "peak_bytes": 65536,
                    "shared_bytes": 0, "shared_buffers": 0}]}
    ])"));
}

TEST(StatsJson, HasEmptyArraysWithoutData)
{
    EXPECT_EQ(stats_to_json({}),
              nlohmann::json::parse(R"({"clients": [], "heaps": [], "pids": [], "limits": [], "cgroups": []})"));
}

TEST(StatsJson, KeepsSizesAbove4GiBExact)
{
    bufclient::Stats stats;
    stats.clients = {{1, 10, 0, 0, "big", "", {{"system", 6442450944, 1, 6442450944}}}};
    const nlohmann::json json = stats_to_json(stats);
    EXPECT_EQ(json.at("pids").at(0).at("bytes").get<std::uint64_t>(), 6442450944u);
    EXPECT_THAT(json_text(json), HasSubstr("\"bytes\": 6442450944"));
}

TEST(JsonText, ReplacesInvalidUtf8InsteadOfThrowing)
{
    bufclient::Stats stats;
    stats.clients = {{1, 10, 0, 0, "bad\xff" "comm", "", {}}};
    std::string text;
    EXPECT_NO_THROW(text = json_text(stats_to_json(stats)));
    EXPECT_THAT(text, HasSubstr("\"comm\": \"bad\xef\xbf\xbd" "comm\""));
    EXPECT_EQ(text.back(), '\n');
}

// -------------------------------------------------------------------------
// `ionsvc-ctl heaps`.

TEST(HeapList, ShowsEachHeapsBackendTypeIonIdAliasesLiveAndPeakUsageAndPool)
{
    const std::vector<bufclient::HeapInfo> heaps = {
        {"memfd", "memfd", "system", 3145728, 3, 4194304, {"system", "scratch"}, std::nullopt, 2097152, 2},
        {"ion:camera_secure_carveout", "ion", "carveout", 0, 0, 0, {}, 2},
    };
    EXPECT_EQ(render_heap_list(heaps),
              "HEAP                        BACKEND  TYPE      ION_ID  ALIASES         BUFFERS    BYTES    SIZE     PEAK  POOL  POOL_SIZE\n"
              "memfd                       memfd    system         -  system,scratch        3  3145728  3.0MiB  4194304     2     2.0MiB\n"
              "ion:camera_secure_carveout  ion      carveout       2  -                     0        0      0B        0     0         0B\n");
}

TEST(HeapListJson, HasTheDocumentedFieldsAndValues)
{
    const std::vector<bufclient::HeapInfo> heaps = {
        {"memfd", "memfd", "system", 3145728, 3, 4194304, {"system"}, std::nullopt},
        {"ion:ion_system_heap", "ion", "system", 0, 0, 0, {}, 0},
    };
    EXPECT_EQ(heaps_to_json(heaps), nlohmann::json::parse(R"({"heaps": [
        {"name": "memfd", "backend": "memfd", "type": "system",
         "live_bytes": 3145728, "live_buffers": 3, "peak_bytes": 4194304, "aliases": ["system"],
         "ion_heap_id": null, "pool_bytes": 0, "pool_buffers": 0},
        {"name": "ion:ion_system_heap", "backend": "ion", "type": "system",
         "live_bytes": 0, "live_buffers": 0, "peak_bytes": 0, "aliases": [], "ion_heap_id": 0,
         "pool_bytes": 0, "pool_buffers": 0}
    ]})"));
}

// -------------------------------------------------------------------------
// Small pieces.

TEST(HumanSize, UsesBinaryUnitsWithOneDecimal)
{
    EXPECT_EQ(human_size(0), "0B");
    EXPECT_EQ(human_size(1023), "1023B");
    EXPECT_EQ(human_size(1024), "1.0KiB");
    EXPECT_EQ(human_size(1536), "1.5KiB");
    EXPECT_EQ(human_size(1048576), "1.0MiB");
    EXPECT_EQ(human_size(3ull << 30), "3.0GiB");
}

TEST(HumanSize, StepsUpAUnitRatherThanPrinting1024)
{
    EXPECT_EQ(human_size(1048575), "1.0MiB");
    EXPECT_EQ(human_size(1048575ull * 1024), "1.0GiB");
}

TEST(ErrorText, NamesTheStatusAndCarriesTheMessage)
{
    EXPECT_EQ(error_text({StatusCode::kUnavailable, "cannot connect to ionsvcd at /x.sock"}),
              "ionsvc-ctl: UNAVAILABLE: cannot connect to ionsvcd at /x.sock");
    EXPECT_EQ(error_text({StatusCode::kNotFound, "no such pid"}), "ionsvc-ctl: NOT_FOUND: no such pid");
}

// -------------------------------------------------------------------------
// Text from clients, checked again before it reaches a terminal.

TEST(MakePrintable, EscapesEveryTextOfTheStatsBeforeAViewShowsIt)
{
    bufclient::Stats stats = sample_stats();
    stats.clients[0].comm = "\x1b[2J\xff";
    stats.clients[0].name = "a\nb";
    stats.heaps[0].orphaned[0].comm = "\x1b]0;t\x07";
    stats.limits = {{"quota.heaps.\x1b[31m.uid", "uid 1 in heap \x1b[31m", "bytes", 1, 2}};
    make_printable(stats);
    EXPECT_EQ(stats.limits[0].scope, "uid 1 in heap \\x1b[31m");
    EXPECT_EQ(stats.clients[0].comm, "\\x1b[2J\xEF\xBF\xBD");
    EXPECT_EQ(stats.clients[0].name, "a\\x0ab");
    const std::string views = render_ion_clients(stats) + render_ion_heaps(stats) + render_pids_table(stats);
    EXPECT_THAT(views, Not(HasSubstr("\x1b")));
    EXPECT_THAT(views, Not(HasSubstr("\x07")));
    EXPECT_THAT(views, HasSubstr("\\x1b]0;t\\x07"));
}

TEST(MakePrintable, LeavesPrintableStatsAsTheyAre)
{
    bufclient::Stats stats = sample_stats();
    make_printable(stats);
    EXPECT_EQ(render_ion_clients(stats), render_ion_clients(sample_stats()));
    EXPECT_EQ(render_ion_heaps(stats), render_ion_heaps(sample_stats()));
}

TEST(ErrorText, EscapesControlCharactersInTheMessage)
{
    EXPECT_EQ(error_text({StatusCode::kNoSuchHeap, "no heap named 'x\x1b[2J'"}),
              "ionsvc-ctl: NO_SUCH_HEAP: no heap named 'x\\x1b[2J'");
}

} // namespace
} // namespace ionsvc::ctl
