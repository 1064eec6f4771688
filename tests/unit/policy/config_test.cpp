// SPDX-License-Identifier: MIT
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/config.h"
#include "config_mistakes.h"

namespace ionsvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const AliasRule *find_alias(const Config &config, std::string_view alias)
{
    for (const auto &rule : config.aliases) {
        if (rule.alias == alias)
            return &rule;
    }
    return nullptr;
}

TEST(Config, AnEmptyFileGivesTheBuiltInAliases)
{
    const auto config = parse_config("", "test.conf");
    ASSERT_TRUE(config) << config.error();
    ASSERT_EQ(config->aliases.size(), default_alias_rules().size());
    EXPECT_THAT(find_alias(*config, "system")->candidates,
                ElementsAre("ion-type:system", "dma-heap:system", "udmabuf", "memfd"));
}

TEST(Config, AnAliasReplacesTheBuiltInOneOfThatNameAndAddsNewOnes)
{
    const auto config = parse_config(R"(
# comments are fine
[aliases]
system = ["memfd"]
camera = ["ion:ion_carveout_heap", "dma-heap:linux,cma"]
)",
                                     "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_THAT(find_alias(*config, "system")->candidates, ElementsAre("memfd"));
    EXPECT_THAT(find_alias(*config, "camera")->candidates,
                ElementsAre("ion:ion_carveout_heap", "dma-heap:linux,cma"));
    ASSERT_NE(find_alias(*config, "contig"), nullptr);
}

TEST(Config, ASyntaxErrorNamesTheFileAndLine)
{
    const auto config = parse_config("[aliases]\nsystem = [\"memfd\"\n", "/etc/ionsvc/ionsvc.conf");
    ASSERT_FALSE(config);
    EXPECT_THAT(config.error(), StartsWith("/etc/ionsvc/ionsvc.conf:"));
}

TEST(Config, AnUnknownSettingIsAnErrorNamingIt)
{
    const auto config = parse_config("\n[alias]\nsystem = [\"memfd\"]\n", "test.conf");
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error(), "test.conf:2:2: unknown setting 'alias'");
}

TEST(Config, AnAliasMustBeANonEmptyArrayOfNames)
{
    for (const char *text : {"[aliases]\nsystem = \"memfd\"\n", "[aliases]\nsystem = []\n",
                             "[aliases]\nsystem = [\"memfd\", 3]\n", "[aliases]\nsystem = [\"\"]\n",
                             "aliases = 1\n"}) {
        SCOPED_TRACE(text);
        const auto config = parse_config(text, "test.conf");
        ASSERT_FALSE(config);
        EXPECT_THAT(config.error(), StartsWith("test.conf:"));
    }
}

TEST(Config, AnAliasNameWithAColonIsRefused)
{
    const auto config = parse_config("[aliases]\n\"ion:mine\" = [\"memfd\"]\n", "test.conf");
    ASSERT_FALSE(config);
    EXPECT_THAT(config.error(), HasSubstr("without ':'"));
}

TEST(Config, AMissingDefaultFileIsTheBuiltInConfigButAMissingGivenFileIsAnError)
{
    const std::string path = ::testing::TempDir() + "/ionsvc-no-such.conf";
    std::remove(path.c_str());
    const auto by_default = load_config(path, true);
    ASSERT_TRUE(by_default) << by_default.error();
    EXPECT_EQ(by_default->aliases.size(), default_alias_rules().size());

    const auto given = load_config(path, false);
    ASSERT_FALSE(given);
    EXPECT_EQ(given.error(), path + ": No such file or directory");
}

TEST(Config, LoadsAFileFromDisk)
{
    const std::string path = ::testing::TempDir() + "/ionsvc-config-test.conf";
    {
        std::ofstream file(path);
        file << "[aliases]\nscratch = [\"memfd\"]\n";
    }
    const auto config = load_config(path, false);
    std::remove(path.c_str());
    ASSERT_TRUE(config) << config.error();
    EXPECT_THAT(find_alias(*config, "scratch")->candidates, ElementsAre("memfd"));
}

} // namespace
} // namespace ionsvc

namespace ionsvc {
namespace {

TEST(PoolConfig, IsEmptyByDefaultWithA256MebibyteThreshold)
{
    const auto config = parse_config("", "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_TRUE(config->pool.classes.empty());
    EXPECT_EQ(config->pool.min_available, 256ull << 20);
}

TEST(PoolConfig, ReadsSizeClassesPerHeapAndTheThreshold)
{
    const auto config = parse_config(R"(
[pool]
min_available = "1G"
[pool.heaps.memfd]
"1M" = 4
"8M" = 0
[pool.heaps."dma-heap:system"]
"65536" = 2
)",
                                     "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_EQ(config->pool.min_available, 1ull << 30);
    ASSERT_EQ(config->pool.classes.size(), 3u);
    std::vector<std::tuple<std::string, std::uint64_t, std::uint32_t, std::string>> classes;
    for (const PoolClass &pool_class : config->pool.classes)
        classes.emplace_back(pool_class.heap, pool_class.size, pool_class.count, pool_class.origin);
    std::sort(classes.begin(), classes.end());
    EXPECT_EQ(classes[0], std::make_tuple(std::string("dma-heap:system"), 65536ull, 2u,
                                          std::string("pool.heaps.dma-heap:system.65536")));
    EXPECT_EQ(classes[1], std::make_tuple(std::string("memfd"), 1ull << 20, 4u, std::string("pool.heaps.memfd.1M")));
    EXPECT_EQ(classes[2], std::make_tuple(std::string("memfd"), 8ull << 20, 0u, std::string("pool.heaps.memfd.8M")));
}

TEST(PoolConfig, MistakesNameTheirPlace)
{
    testing::expect_config_errors({
        {"[pool]\nsize = 1\n", "test.conf:2:1: unknown setting 'pool.size' (min_available and heaps are)"},
        {"[pool]\nmin_available = \"lots\"\n", "test.conf:2:17: a size is an integer or a string"},
        {"pool = 3\n", "test.conf:1:8: 'pool' must be a table"},
        {"[pool]\nheaps = 1\n", "test.conf:2:9: 'pool.heaps' must be a table"},
        {"[pool.heaps]\nmemfd = 4\n", "test.conf:2:9: 'pool.heaps.memfd' must be a table of sizes and counts"},
        {"[pool.heaps.memfd]\n\"1Q\" = 4\n", "test.conf:2:1: 'pool.heaps.memfd.1Q': the key is a buffer size"},
        {"[pool.heaps.memfd]\n\"0\" = 4\n", "test.conf:2:1: 'pool.heaps.memfd.0': the key is a buffer size"},
        {"[pool.heaps.memfd]\n\"1M\" = -1\n", "test.conf:2:8: 'pool.heaps.memfd.1M' is the number of buffers to keep ready, 0 to 1024"},
        {"[pool.heaps.memfd]\n\"1M\" = 1025\n", "'pool.heaps.memfd.1M' is the number of buffers to keep ready"},
        {"[pool.heaps.memfd]\n\"1M\" = \"4\"\n", "'pool.heaps.memfd.1M' is the number of buffers to keep ready"},
    });
}


TEST(ConnectionLimits, DefaultTo64PerUid1024InAllFiveSecondsForHelloAnd256UnreadBuffers)
{
    const auto config = parse_config("", "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_EQ(config->connections.per_uid, 64u);
    EXPECT_EQ(config->connections.total, 1024u);
    EXPECT_EQ(config->connections.hello_timeout, std::chrono::milliseconds(5000));
    EXPECT_EQ(config->connections.unread_buffers, 256u);
}

TEST(ConnectionLimits, AreReadFromTheConnectionsTable)
{
    const auto config = parse_config(
        "[connections]\nper_uid = 8\ntotal = 100\nhello_timeout_ms = 250\nunread_buffers = 16\n", "test.conf");
    ASSERT_TRUE(config) << config.error();
    EXPECT_EQ(config->connections.per_uid, 8u);
    EXPECT_EQ(config->connections.total, 100u);
    EXPECT_EQ(config->connections.hello_timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(config->connections.unread_buffers, 16u);
}

TEST(BuiltInUidQuota, IsAQuarterOfTheFdsAtMost16384BuffersAndAQuarterOfTheMemory)
{
    EXPECT_EQ(builtin_uid_quota({.fd_limit = 512, .memory_bytes = 8ull << 30}).buffers, 128u);
    EXPECT_EQ(builtin_uid_quota({.fd_limit = 512, .memory_bytes = 8ull << 30}).bytes, 2ull << 30);
    EXPECT_EQ(builtin_uid_quota({.fd_limit = 1u << 20, .memory_bytes = 8ull << 30}).buffers, 16384u);
    EXPECT_THAT(builtin_uid_quota({}).origin, ::testing::HasSubstr("quota.uid, built in"));
    EXPECT_FALSE(builtin_uid_quota({}).limits_anything()) << "a figure it could not read limits nothing";
}

TEST(BuiltInUidQuota, AppliesUnlessTheFileSetsQuotaUidWhichAnEmptyTableLifts)
{
    const MachineLimits machine{.fd_limit = 1024, .memory_bytes = 1ull << 30};
    auto config = parse_config("[quota]\nclient = { buffers = 8 }\n", "test.conf");
    ASSERT_TRUE(config) << config.error();
    apply_builtin_quota(config->quota, machine);
    EXPECT_EQ(config->quota.all_heaps.uid.buffers, 256u);
    EXPECT_EQ(config->quota.all_heaps.uid.bytes, 256ull << 20);

    config = parse_config("[quota]\nuid = { bytes = \"1G\" }\n", "test.conf");
    ASSERT_TRUE(config) << config.error();
    apply_builtin_quota(config->quota, machine);
    EXPECT_EQ(config->quota.all_heaps.uid.buffers, std::nullopt) << "the file's limit replaces it whole";
    EXPECT_EQ(config->quota.all_heaps.uid.bytes, 1ull << 30);

    config = parse_config("[quota]\nuid = {}\n", "test.conf");
    ASSERT_TRUE(config) << config.error();
    apply_builtin_quota(config->quota, machine);
    EXPECT_FALSE(config->quota.all_heaps.uid.limits_anything());
}

TEST(ConnectionLimits, MistakesNameTheirPlace)
{
    testing::expect_config_errors({
        {"[connections]\nper_uid = 0\n", "test.conf:2:11: 'connections.per_uid' must be a whole number from 1 to 1048576"},
        {"[connections]\ntotal = \"many\"\n", "test.conf:2:9: 'connections.total' must be a whole number"},
        {"[connections]\nhello_timeout_ms = 3600001\n", "'connections.hello_timeout_ms' must be a whole number from 1 to 3600000"},
        {"[connections]\nidle = 1\n", "test.conf:2:1: unknown setting 'connections.idle' (per_uid, total, hello_timeout_ms and unread_buffers are)"},
        {"connections = 3\n", "test.conf:1:15: 'connections' must be a table"},
    });
}

} // namespace
} // namespace ionsvc
