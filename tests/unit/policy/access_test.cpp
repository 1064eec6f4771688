// SPDX-License-Identifier: MIT
// Who may use which heap, who sees whom in stats, and the [access] section.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/access.h"
#include "policy/config.h"
#include "config_mistakes.h"

namespace ionsvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

AccessConfig carveout_for(std::vector<uid_t> uids, std::vector<gid_t> groups)
{
    AccessConfig access;
    access.heaps["ion:carveout"] = {std::move(uids), std::move(groups), "access.heaps.ion:carveout"};
    return access;
}

TEST(HeapAccess, AHeapWithoutRulesIsOpenToEveryone)
{
    EXPECT_FALSE(access_refusal(carveout_for({}, {}), {1, 1000, 1000, "camera", {}}, "memfd"));
}

TEST(HeapAccess, AHeapWithRulesAdmitsItsUidsAndTheMembersOfItsGroups)
{
    const AccessConfig access = carveout_for({1000}, {44});
    EXPECT_FALSE(access_refusal(access, {1, 1000, 1000, "camera", {}}, "ion:carveout"));
    EXPECT_FALSE(access_refusal(access, {2, 1001, 44, "primary", {}}, "ion:carveout"));
    EXPECT_FALSE(access_refusal(access, {3, 1002, 1002, "supplementary", {20, 44}}, "ion:carveout"));
    EXPECT_FALSE(access_refusal(access, {4, 0, 0, "root", {}}, "ion:carveout")) << "root always may";

    const auto refused = access_refusal(access, {5, 1003, 1003, "stranger", {20}}, "ion:carveout");
    ASSERT_TRUE(refused);
    EXPECT_EQ(*refused, "uid 1003 may not use heap ion:carveout (access.heaps.ion:carveout)");
}

TEST(StatsVisibility, RootAndTheAdminGroupSeeEveryClientOthersTheirOwnUids)
{
    AccessConfig access;
    EXPECT_TRUE(sees_every_client(access, {1, 0, 0, "root", {}}));
    EXPECT_FALSE(sees_every_client(access, {2, 1000, 1000, "camera", {}}));
    access.admin_group = 4000;
    EXPECT_TRUE(sees_every_client(access, {3, 1000, 1000, "admin", {4000}}));
    EXPECT_TRUE(sees_every_client(access, {4, 1000, 4000, "admin", {}}));
    EXPECT_FALSE(sees_every_client(access, {5, 1000, 1000, "camera", {4001}}));
}

TEST(AccessConfig, ParsesTheAdminGroupAndHeapRules)
{
    const auto config = parse_config(R"(
[access]
admin_group = "root"
[access.heaps."ion:ion_carveout_heap"]
uids = [1000, 1001]
groups = ["root", 44]
)",
                                     "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_EQ(config->access.admin_group, 0u);
    const HeapAccess &carveout = config->access.heaps.at("ion:ion_carveout_heap");
    EXPECT_THAT(carveout.uids, ElementsAre(1000u, 1001u));
    EXPECT_THAT(carveout.groups, ElementsAre(0u, 44u));
    EXPECT_EQ(carveout.origin, "access.heaps.ion:ion_carveout_heap");
}

TEST(AccessConfig, MistakesAreErrorsWithTheirLineAndColumn)
{
    testing::expect_config_errors({
        {"[access]\nadmin_group = 5\n", "test.conf:2:15: 'access.admin_group' is a group name"},
        {"[access]\nadmin_group = \"no-such-group-here\"\n", "test.conf:2:15: unknown group 'no-such-group-here'"},
        {"[access]\nadmins = 1\n", "test.conf:2:1: unknown setting 'access.admins'"},
        {"[access.heaps.memfd]\nusers = [1]\n", "test.conf:2:1: unknown setting 'access.heaps.memfd.users'"},
        {"[access.heaps.memfd]\nuids = 1\n", "test.conf:2:8: 'access.heaps.memfd.uids' must be an array"},
        {"[access.heaps.memfd]\nuids = [\"alice\"]\n", "test.conf:2:9: 'alice' is not a uid (a number)"},
        {"[access.heaps.memfd]\ngroups = [1.5]\n", "test.conf:2:11: 'access.heaps.memfd.groups' lists numbers or group names"},
    });
}

} // namespace
} // namespace ionsvc
