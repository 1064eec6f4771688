// SPDX-License-Identifier: MIT
#include <cstdio>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config.h"

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
