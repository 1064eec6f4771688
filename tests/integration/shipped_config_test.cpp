// SPDX-License-Identifier: MIT
// The config file that cmake --install puts in /etc/ionsvc (config/ionsvc.conf):
// the daemon starts on it as shipped, and on it with its examples uncommented.
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> shipped_lines()
{
    std::ifstream file(IONSVC_SHIPPED_CONFIG);
    EXPECT_TRUE(file) << IONSVC_SHIPPED_CONFIG;
    std::vector<std::string> lines;
    for (std::string line; std::getline(file, line);)
        lines.push_back(line);
    return lines;
}

TEST(ShippedConfig, TheDaemonServesOnItAndItKeepsTheBuiltInAliases)
{
    DaemonProcess daemon({"--config", IONSVC_SHIPPED_CONFIG});
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 4096});
    ASSERT_TRUE(buffers) << buffers.error().message;
    EXPECT_EQ(buffers->front().heap(), "memfd");

    // Out of the box it changes nothing: on memfd alone, the built-in
    // 'system' leads to memfd and 'contig' nowhere.
    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps) << heaps.error().message;
    ASSERT_EQ(heaps->size(), 1u);
    EXPECT_THAT(heaps->front().aliases, ElementsAre("system"));
}

// An example an administrator uncomments must parse: every line of the form
// "# <alias> = [...]" is one.
TEST(ShippedConfig, ItsExampleAliasesParseWhenUncommented)
{
    const std::regex example(R"(# ([A-Za-z0-9_-]+) = \[.*\])");
    std::ostringstream uncommented;
    std::vector<std::string> aliases;
    for (const std::string &line : shipped_lines()) {
        std::smatch match;
        if (std::regex_match(line, match, example)) {
            aliases.push_back(match[1]);
            uncommented << line.substr(2) << '\n';
        } else {
            uncommented << line << '\n';
        }
    }
    ASSERT_FALSE(aliases.empty()) << "no example alias in " << IONSVC_SHIPPED_CONFIG;

    TemporaryDirectory directory;
    const std::string path = directory.path() + "/ionsvc.conf";
    std::ofstream(path) << uncommented.str();
    DaemonProcess daemon({"--config", path});
    auto client = daemon.connect();
    ASSERT_TRUE(client.list_heaps());
    // The daemon resolves every alias at start and logs where each leads.
    for (const std::string &alias : aliases)
        EXPECT_THAT(daemon.log(), HasSubstr("alias '" + alias + "' ")) << uncommented.str();
}

} // namespace
} // namespace ionsvc::testing
