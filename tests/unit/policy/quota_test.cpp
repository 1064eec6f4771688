// SPDX-License-Identifier: MIT
// Quota arithmetic at its edges, and the quota section of the config file.
#include <sys/mman.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/config.h"
#include "config_mistakes.h"
#include "policy/quota.h"

namespace ionsvc {
namespace {

using ::testing::HasSubstr;

constexpr HeapIndex kSystem = 0;
constexpr HeapIndex kCarveout = 1;
constexpr std::uint64_t kMiB = 1 << 20;

// What the kernel says of a buffer only the daemon still references.
long nobody_else_holds(int)
{
    return 1;
}

Limit bytes(std::uint64_t value, std::string origin)
{
    return {value, std::nullopt, std::move(origin)};
}

class Quota : public ::testing::Test
{
protected:
    // camera (uid 1000, gid 44) holds held_bytes in one system buffer.
    void hold(std::uint64_t held_bytes, ClientId client)
    {
        books_.add_buffer(client, kSystem, held_bytes, UniqueFD{});
    }

    std::optional<std::string> refusal(ClientId client, std::uint64_t size, std::uint64_t count = 1,
                                       HeapIndex heap = kSystem)
    {
        const std::string_view name = heap == kSystem ? "ion:system" : "ion:carveout";
        return quota_refusal(quota_, *books_.client(client), {heap, name, size, count});
    }

    Books books_{2};
    QuotaConfig quota_;
    const ClientId camera_ = books_.add_client({100, 1000, 44, "camera"});
    const ClientId preview_ = books_.add_client({101, 1000, 44, "preview"});
    const ClientId display_ = books_.add_client({200, 1001, 45, "display"});
};

TEST_F(Quota, NoLimitsAdmitAnything)
{
    EXPECT_FALSE(refusal(camera_, UINT32_MAX, 64));
}

TEST_F(Quota, ExactlyAtALimitIsWithinItAndOneByteOverIsNot)
{
    quota_.all_heaps.client = bytes(4 * kMiB, "quota.client");
    hold(3 * kMiB, camera_);
    EXPECT_FALSE(refusal(camera_, kMiB));
    const auto over = refusal(camera_, kMiB + 1);
    ASSERT_TRUE(over);
    EXPECT_EQ(*over, "this client holds 3145728 bytes in 1 buffers; 1 more of 1048577 bytes would pass its "
                     "limit of 4194304 bytes (quota.client)");
}

TEST_F(Quota, ABatchThatWouldCrossALimitIsRefusedWhole)
{
    quota_.all_heaps.client = bytes(4 * kMiB, "quota.client");
    hold(kMiB, camera_);
    EXPECT_FALSE(refusal(camera_, kMiB, 3));
    const auto over = refusal(camera_, kMiB, 4);
    ASSERT_TRUE(over);
    EXPECT_THAT(*over, HasSubstr("4 more of 1048576 bytes"));
}

TEST_F(Quota, ABufferCountLimitCountsBuffers)
{
    quota_.all_heaps.client = {std::nullopt, 2, "quota.client"};
    hold(4096, camera_);
    EXPECT_FALSE(refusal(camera_, 4096));
    const auto over = refusal(camera_, 4096, 2);
    ASSERT_TRUE(over);
    EXPECT_THAT(*over, HasSubstr("would pass its limit of 2 buffers (quota.client)"));
}

TEST_F(Quota, AUidLimitCountsEveryConnectionOfThatUid)
{
    quota_.all_heaps.uid = bytes(4 * kMiB, "quota.uid");
    hold(2 * kMiB, camera_);
    hold(2 * kMiB, preview_); // same uid, another connection
    const auto over = refusal(preview_, 4096);
    ASSERT_TRUE(over);
    EXPECT_THAT(*over, HasSubstr("uid 1000 holds 4194304 bytes in 2 buffers"));
    EXPECT_FALSE(refusal(display_, 4 * kMiB)) << "another uid has a budget of its own";
}

TEST_F(Quota, AUidOfItsOwnReplacesTheDefaultForThatUid)
{
    quota_.all_heaps.uid = bytes(kMiB, "quota.uid");
    quota_.all_heaps.uids[1001] = bytes(8 * kMiB, "quota.uids.1001");
    EXPECT_FALSE(refusal(display_, 8 * kMiB));
    EXPECT_THAT(refusal(display_, 8 * kMiB + 1).value_or(""), HasSubstr("(quota.uids.1001)"));
    EXPECT_THAT(refusal(camera_, kMiB + 1).value_or(""), HasSubstr("(quota.uid)"));
}

TEST_F(Quota, AGroupLimitCountsTheConnectionsOfThatGid)
{
    quota_.all_heaps.groups[44] = bytes(2 * kMiB, "quota.groups.video");
    hold(kMiB, camera_);
    hold(kMiB, preview_);
    EXPECT_THAT(refusal(camera_, 4096).value_or(""), HasSubstr("group 44 holds 2097152 bytes in 2 buffers"));
    EXPECT_FALSE(refusal(display_, 16 * kMiB));
}

TEST_F(Quota, AGroupLimitCountsTheClientsWithThatSupplementaryGroupToo)
{
    quota_.all_heaps.groups[44] = bytes(2 * kMiB, "quota.groups.video");
    const ClientId viewer = books_.add_client({300, 1002, 1002, "viewer", {1002, 44}});
    hold(kMiB, camera_);
    hold(kMiB, viewer);
    EXPECT_THAT(refusal(viewer, 4096).value_or(""), HasSubstr("group 44 holds 2097152 bytes in 2 buffers"));
    EXPECT_TRUE(refusal(camera_, 4096)) << "the viewer's buffer counts in group 44";
    quota_.all_heaps.groups[1002] = bytes(kMiB, "quota.groups.1002");
    EXPECT_FALSE(refusal(viewer, 0)) << "a primary group listed again counts once";
}

TEST_F(Quota, AHeapLimitCountsOnlyThatHeap)
{
    quota_.heaps["ion:carveout"].client = bytes(kMiB, "quota.heaps.ion:carveout.client");
    hold(16 * kMiB, camera_); // in the system heap
    EXPECT_FALSE(refusal(camera_, kMiB, 1, kCarveout));
    const auto over = refusal(camera_, kMiB + 4096, 1, kCarveout);
    ASSERT_TRUE(over);
    EXPECT_THAT(*over, HasSubstr("this client holds 0 bytes in 0 buffers in heap ion:carveout"));
    EXPECT_FALSE(refusal(camera_, 64 * kMiB)) << "other heaps are not limited";
}

TEST_F(Quota, TheLimitsThatHoldForAClientAreListedWithTheirUse)
{
    quota_.all_heaps.client = {std::nullopt, 8, "quota.client"};
    quota_.all_heaps.uid = builtin_uid_quota({.fd_limit = 1024, .memory_bytes = 64 * kMiB});
    quota_.all_heaps.groups[45] = bytes(kMiB, "quota.groups.45"); // not camera's group
    quota_.heaps["ion:carveout"].uids[1000] = bytes(4 * kMiB, "quota.heaps.ion:carveout.uids.1000");
    hold(kMiB, camera_);
    hold(2 * kMiB, preview_);

    const auto limits = quota_limits_of(quota_, *books_.client(camera_), {"ion:system", "ion:carveout"});
    ASSERT_EQ(limits.size(), 4u);
    const auto expect = [&](std::size_t i, std::string setting, std::string scope, std::string unit,
                            std::uint64_t used, std::uint64_t limit) {
        EXPECT_EQ(limits[i].setting, setting) << i;
        EXPECT_EQ(limits[i].scope, scope) << i;
        EXPECT_EQ(limits[i].unit, unit) << i;
        EXPECT_EQ(limits[i].used, used) << i;
        EXPECT_EQ(limits[i].limit, limit) << i;
    };
    expect(0, "quota.client", "this client", "buffers", 1, 8);
    expect(1, "quota.uid", "uid 1000", "bytes", 3 * kMiB, 16 * kMiB);
    expect(2, "quota.uid", "uid 1000", "buffers", 2, 256);
    expect(3, "quota.heaps.ion:carveout.uids.1000", "uid 1000 in heap ion:carveout", "bytes", 0, 4 * kMiB);
}

TEST_F(Quota, FreedBuffersGiveTheirRoomBack)
{
    quota_.all_heaps.uid = bytes(2 * kMiB, "quota.uid");
    const BufferId buffer = books_.add_buffer(camera_, kSystem, 2 * kMiB, UniqueFD{});
    EXPECT_TRUE(refusal(preview_, 4096));
    ASSERT_EQ(books_.remove_buffer(camera_, buffer, nobody_else_holds), 0);
    EXPECT_FALSE(refusal(preview_, 2 * kMiB));
}

TEST_F(Quota, WithImportsNotCountingAnImportLeavesTheImportersRoomAlone)
{
    quota_.imports_count = false;
    quota_.all_heaps.client = bytes(kMiB, "quota.client");
    quota_.all_heaps.uid = bytes(kMiB, "quota.uid");
    const BufferId shared = books_.add_buffer(display_, kSystem, kMiB, UniqueFD{});
    ASSERT_EQ(books_.add_holder(camera_, shared), 0);
    EXPECT_FALSE(refusal(camera_, kMiB)) << "camera's own room is untouched by what it imported";

    quota_.imports_count = true;
    EXPECT_THAT(refusal(camera_, 4096).value_or(""), HasSubstr("this client holds 1048576 bytes"));
}

TEST_F(Quota, AnImportStaysAnImportWhenItsAllocatorFreesItButItsLastHolderPaysForIt)
{
    quota_.imports_count = false;
    quota_.all_heaps.client = bytes(kMiB, "quota.client");
    const BufferId shared = books_.add_buffer(display_, kSystem, kMiB, UniqueFD{});
    ASSERT_EQ(books_.add_holder(camera_, shared), 0);
    ASSERT_EQ(books_.add_holder(preview_, shared), 0);
    // The allocator lets go: the first importer left holds it as its own.
    ASSERT_EQ(books_.remove_buffer(display_, shared, nobody_else_holds), 0);
    EXPECT_TRUE(refusal(camera_, 4096)) << "the buffer lives on camera's account now";
    EXPECT_FALSE(refusal(preview_, kMiB)) << "still only an import to preview";
    ASSERT_EQ(books_.remove_buffer(camera_, shared, nobody_else_holds), 0);
    EXPECT_TRUE(refusal(preview_, 4096)) << "preview holds it alone";
}

TEST(CgroupSubtree, IsTheCgroupOrBelowItAndNothingMerelyNamedAlike)
{
    EXPECT_TRUE(in_cgroup_subtree("/system.slice/camera.service", "/system.slice/camera.service"));
    EXPECT_TRUE(in_cgroup_subtree("/system.slice/camera.service/worker", "/system.slice"));
    EXPECT_TRUE(in_cgroup_subtree("/user.slice", "/"));
    EXPECT_FALSE(in_cgroup_subtree("/system.slice/camera.service2", "/system.slice/camera.service"));
    EXPECT_FALSE(in_cgroup_subtree("/system.slice", "/system.slice/camera.service"));
    EXPECT_FALSE(in_cgroup_subtree("", "/")) << "an unknown cgroup is in none";
}

class CgroupQuota : public Quota
{
protected:
    CgroupQuota()
    {
        quota_.all_heaps.cgroups["/system.slice/camera.service"] =
            bytes(2 * kMiB, "quota.cgroups.\"/system.slice/camera.service\"");
        books_.set_tracked_cgroups(cgroups_named(quota_));
    }

    ClientId in_cgroup(pid_t pid, uid_t uid, std::string cgroup)
    {
        return books_.add_client({pid, uid, uid, "worker", {}, std::move(cgroup)});
    }
};

TEST_F(CgroupQuota, ALimitCountsEveryClientInTheSubtreeWhateverItsUid)
{
    const ClientId main = in_cgroup(300, 1000, "/system.slice/camera.service");
    const ClientId helper = in_cgroup(301, 2000, "/system.slice/camera.service/helper");
    const ClientId outsider = in_cgroup(302, 1000, "/system.slice/display.service");
    hold(kMiB, main);
    hold(kMiB, helper);
    EXPECT_EQ(refusal(main, 4096).value_or(""),
              "cgroup /system.slice/camera.service holds 2097152 bytes in 2 buffers; 1 more of 4096 bytes would "
              "pass its limit of 2097152 bytes (quota.cgroups.\"/system.slice/camera.service\")");
    EXPECT_TRUE(refusal(helper, 4096)) << "a cgroup below counts in the subtree";
    EXPECT_FALSE(refusal(outsider, 16 * kMiB)) << "another service has a budget of its own";
    EXPECT_FALSE(refusal(camera_, 16 * kMiB)) << "a client without a cgroup is in no subtree";
}

TEST_F(CgroupQuota, AReloadThatNamesACgroupCountsWhatItsClientsHoldAlready)
{
    const ClientId main = in_cgroup(300, 1000, "/system.slice/other.service");
    hold(3 * kMiB, main);
    quota_.all_heaps.cgroups["/system.slice/other.service"] = bytes(4 * kMiB, "quota.cgroups.other");
    books_.set_tracked_cgroups(cgroups_named(quota_));
    EXPECT_THAT(refusal(main, kMiB + 1).value_or(""), HasSubstr("cgroup /system.slice/other.service holds 3145728"));
    EXPECT_FALSE(refusal(main, kMiB));
}

TEST_F(CgroupQuota, AnOrphanStaysChargedToItsCgroupUntilItDies)
{
    const ClientId main = in_cgroup(300, 1000, "/system.slice/camera.service");
    const BufferId buffer = books_.add_buffer(main, kSystem, 2 * kMiB, UniqueFD{::memfd_create("b", 0)}, true);
    books_.delivered(main, std::span<const BufferId>{&buffer, 1});
    books_.remove_client(main, [](int) { return 2L; }); // held elsewhere: an orphan
    ASSERT_EQ(books_.orphans().size(), 1u);
    const ClientId next = in_cgroup(301, 1000, "/system.slice/camera.service");
    EXPECT_TRUE(refusal(next, 4096)) << "the orphan's 2 MiB still count in the service";
    books_.release_unreferenced(kEveryBuffer, [](int) { return 1L; });
    EXPECT_FALSE(refusal(next, 2 * kMiB));
}

// -------------------------------------------------------------------------
// The config file.

TEST(QuotaConfig, ParsesEveryKindOfLimit)
{
    const auto config = parse_config(R"(
[quota]
imports_count = false
client = { bytes = "256M", buffers = 1024 }
uid = { bytes = 1073741824 }
[quota.uids]
1000 = { bytes = "4G" }
[quota.groups]
root = { buffers = 10 }
45 = { bytes = "1K" }
[quota.cgroups]
"/system.slice/camera.service/" = { bytes = "512M" }
[quota.heaps."ion:ion_carveout_heap"]
uid = { bytes = "16M" }
cgroups = { "/machine.slice" = { buffers = 8 } }
)",
                                     "test.conf");
    ASSERT_TRUE(config) << config.error();
    const QuotaConfig &quota = config->quota;
    EXPECT_FALSE(quota.imports_count);
    EXPECT_EQ(quota.all_heaps.client.bytes, 256ull << 20);
    EXPECT_EQ(quota.all_heaps.client.buffers, 1024u);
    EXPECT_EQ(quota.all_heaps.client.origin, "quota.client");
    EXPECT_EQ(quota.all_heaps.uid.bytes, 1ull << 30);
    EXPECT_FALSE(quota.all_heaps.uid.buffers);
    EXPECT_EQ(quota.all_heaps.uids.at(1000).bytes, 4ull << 30);
    EXPECT_EQ(quota.all_heaps.uids.at(1000).origin, "quota.uids.1000");
    EXPECT_EQ(quota.all_heaps.groups.at(0).buffers, 10u) << "root's gid";
    EXPECT_EQ(quota.all_heaps.groups.at(45).bytes, 1024u);
    EXPECT_EQ(quota.heaps.at("ion:ion_carveout_heap").uid.bytes, 16ull << 20);
    EXPECT_EQ(quota.heaps.at("ion:ion_carveout_heap").uid.origin, "quota.heaps.ion:ion_carveout_heap.uid");
    const Limit &camera = quota.all_heaps.cgroups.at("/system.slice/camera.service");
    EXPECT_EQ(camera.bytes, 512ull << 20) << "a trailing / is dropped";
    EXPECT_EQ(camera.origin, "quota.cgroups.\"/system.slice/camera.service\"");
    EXPECT_EQ(quota.heaps.at("ion:ion_carveout_heap").cgroups.at("/machine.slice").buffers, 8u);
    EXPECT_EQ(cgroups_named(quota), (std::vector<std::string>{"/system.slice/camera.service", "/machine.slice"}));
}

TEST(QuotaConfig, WithoutAQuotaSectionLimitsNothing)
{
    const auto config = parse_config("", "test.conf");
    ASSERT_TRUE(config);
    EXPECT_TRUE(config->quota.imports_count);
    EXPECT_FALSE(config->quota.all_heaps.client.limits_anything());
    EXPECT_TRUE(config->quota.heaps.empty());
}

TEST(QuotaConfig, MistakesAreErrorsWithTheirLineAndColumn)
{
    testing::expect_config_errors({
        {"[quota]\nclient = { bytes = \"12X\" }\n", "test.conf:2:20: a size is an integer or a string"},
        {"[quota]\nclient = { bytes = -1 }\n", "test.conf:2:20: a size cannot be negative"},
        {"[quota]\nclient = { byte = 1 }\n", "test.conf:2:12: unknown setting 'quota.client.byte'"},
        {"[quota]\nclient = 5\n", "test.conf:2:10: 'quota.client' must be a table"},
        {"[quota]\nclients = {}\n", "test.conf:2:1: unknown setting 'quota.clients'"},
        {"[quota.uids]\nalice = { bytes = 1 }\n", "test.conf:2:1: 'alice' is not a uid (a number)"},
        {"[quota.groups]\nno-such-group-here = { bytes = 1 }\n", "test.conf:2:1: unknown group 'no-such-group-here'"},
        {"[quota]\nclient = { bytes = \"99999999T\" }\n", "test.conf:2:20: size too large"},
        {"[quota]\nimports_count = 1\n", "test.conf:2:17: 'quota.imports_count' must be true or false"},
        {"[quota.heaps.memfd]\nimports_count = true\n", "test.conf:2:1: unknown setting 'quota.heaps.memfd.imports_count'"},
        {"[quota.cgroups]\n\"system.slice\" = { bytes = 1 }\n",
         "test.conf:2:1: 'system.slice' is not a cgroup path: it must start with '/'"},
        {"[quota.cgroups]\n\"/a/../b\" = { bytes = 1 }\n", "test.conf:2:1: '/a/../b' is not a cgroup path"},
        {"[quota]\ncgroups = 3\n", "test.conf:2:11: 'quota.cgroups' must be a table"},
    });
}

} // namespace
} // namespace ionsvc
