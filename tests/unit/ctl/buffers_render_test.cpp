// SPDX-License-Identifier: MIT
// `ionsvc-ctl buffers`: its table, its JSON and their order, against golden text.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "render.h"

namespace ionsvc::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bufclient::ClientLabel label(std::uint64_t id, std::uint32_t pid, std::uint32_t uid, std::string comm,
                             std::string name = {})
{
    return {id, pid, uid, std::move(comm), std::move(name)};
}

// A buffer held by its allocator, one shared with an importer after its
// allocator left, and an orphan.
std::vector<bufclient::BufferEntry> sample_buffers()
{
    std::vector<bufclient::BufferEntry> buffers(3);
    buffers[0] = {.id = 7, .heap = "memfd", .size = 4096, .name = "preview", .inode = 501,
                  .allocated_by = label(3, 812, 1000, "camera", "cam"), .allocator_connected = true,
                  .holders = {label(3, 812, 1000, "camera", "cam")}, .age_ms = 850};
    buffers[1] = {.id = 9, .heap = "ion:system", .size = 3 << 20, .name = "frame", .inode = 502,
                  .allocated_by = label(3, 812, 1000, "camera", "cam"), .allocator_connected = false,
                  .holders = {label(4, 955, 1000, "encoder"), label(5, 960, 1001, "display")},
                  .from_pool = true, .age_ms = 75'000};
    buffers[2] = {.id = 2, .heap = "ion:system", .size = 1 << 20, .name = "", .inode = 503,
                  .allocated_by = label(1, 700, 1000, "old", ""), .allocator_connected = false,
                  .orphan_of = label(1, 700, 1000, "old", ""), .age_ms = 3 * 86'400'000ull + 4 * 3'600'000ull};
    return buffers;
}

TEST(BuffersTable, ListsTheLargestFirstWithAllocatorStateHoldersPoolAndAgeThenATotal)
{
    std::vector<bufclient::BufferEntry> buffers = sample_buffers();
    sort_largest_first(buffers);
    EXPECT_EQ(render_buffers_table(buffers),
              "   ID  HEAP          BYTES    SIZE  NAME     ALLOCATED_BY       UID  CLIENT  STATE   "
              "HOLDERS                  POOL    AGE\n"
              "    9  ion:system  3145728  3.0MiB  frame    812/camera(gone)  1000  cam     shared  "
              "955/encoder,960/display  yes   1m15s\n"
              "    2  ion:system  1048576  1.0MiB  -        700/old(gone)     1000  -       orphan  "
              "last:700/old             no    3d04h\n"
              "    7  memfd          4096  4.0KiB  preview  812/camera        1000  cam     held    "
              "812/camera               no    850ms\n"
              "total  3 buffers   4198400  4.0MiB\n");
}

TEST(BuffersTable, HasOnlyTheHeaderAndAZeroTotalWithoutBuffers)
{
    EXPECT_THAT(render_buffers_table({}), HasSubstr("\ntotal  0 buffers      0    0B\n"));
}

TEST(BuffersJson, HasTheDocumentedFieldsAndValues)
{
    std::vector<bufclient::BufferEntry> buffers = sample_buffers();
    const nlohmann::json json = buffers_to_json(buffers);
    EXPECT_EQ(json["total_buffers"], 3);
    EXPECT_EQ(json["total_bytes"], 4096 + (3 << 20) + (1 << 20));
    const nlohmann::json &shared = json["buffers"][1];
    EXPECT_EQ(shared, nlohmann::json::parse(R"({
        "id": 9, "heap": "ion:system", "size": 3145728, "name": "frame", "inode": 502,
        "allocated_by": {"client_id": 3, "pid": 812, "uid": 1000, "comm": "camera", "name": "cam",
                         "connected": false},
        "holders": [{"client_id": 4, "pid": 955, "uid": 1000, "comm": "encoder", "name": ""},
                    {"client_id": 5, "pid": 960, "uid": 1001, "comm": "display", "name": ""}],
        "shared": true, "orphan_of": null, "from_pool": true, "age_ms": 75000
    })"));
    EXPECT_EQ(json["buffers"][2]["orphan_of"]["pid"], 700);
}

TEST(BuffersMakePrintable, EscapesNamesCommsAndClientNamesBeforeAViewShowsThem)
{
    std::vector<bufclient::BufferEntry> buffers = sample_buffers();
    buffers[0].name = "\x1b[2J";
    buffers[1].holders[0].comm = "a\nb";
    buffers[2].orphan_of->comm = "\x1b]0;t\x07";
    buffers[0].allocated_by.name = "\x9b";
    make_printable(buffers);
    const std::string table = render_buffers_table(buffers);
    EXPECT_THAT(table, Not(HasSubstr("\x1b")));
    EXPECT_THAT(table, HasSubstr("\\x1b[2J"));
    EXPECT_THAT(table, HasSubstr("a\\x0ab"));
    EXPECT_THAT(table, HasSubstr("\\x1b]0;t\\x07"));
}

TEST(HumanAge, StepsFromMillisecondsToDays)
{
    EXPECT_EQ(human_age(0), "0ms");
    EXPECT_EQ(human_age(999), "999ms");
    EXPECT_EQ(human_age(12'345), "12.3s");
    EXPECT_EQ(human_age(303'000), "5m03s");
    EXPECT_EQ(human_age(2 * 3'600'000 + 10 * 60'000), "2h10m");
    EXPECT_EQ(human_age(3 * 86'400'000ull + 4 * 3'600'000ull), "3d04h");
}

} // namespace
} // namespace ionsvc::ctl
