// SPDX-License-Identifier: MIT
// The Debian package's maintainer scripts, under the guest's running systemd
// and udev: what dpkg -i did before the tests (image/run-tests), and
// reinstall, remove, purge and install again. Each test leaves the package
// installed and the socket started, as it found them.
#include <sys/stat.h>
#include <pwd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "systemd_guest.h"

namespace ionsvc::vmtest {
namespace {

using ::testing::HasSubstr;

// A device node of 6.12 that udev's rule gives to the group ionsvc.
constexpr const char *kHeapDevice = "/dev/dma_heap/system";
// Where deb-systemd-helper remembers that the package enabled the socket.
constexpr const char *kEnablementState = "/var/lib/systemd/deb-systemd-helper-enabled/ionsvc.socket.dsh-also";

harness::CommandResult dpkg(std::vector<std::string> arguments)
{
    arguments.insert(arguments.begin(), "/usr/bin/dpkg");
    return harness::run_command(arguments);
}

std::string package_field(const std::string &field)
{
    return harness::run_command({"/usr/bin/dpkg-query", "-W", "-f=${" + field + "}", "ionsvc"}).out;
}

std::string is_enabled(const char *unit)
{
    std::string state = systemctl({"is-enabled", unit}).out;
    while (!state.empty() && state.back() == '\n')
        state.pop_back();
    return state;
}

gid_t device_group(const char *device)
{
    struct stat status{};
    return ::stat(device, &status) == 0 ? status.st_gid : static_cast<gid_t>(-1);
}

mode_t device_mode(const char *device)
{
    struct stat status{};
    return ::stat(device, &status) == 0 ? status.st_mode & 07777 : 0;
}

std::string read_file(const std::string &path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

class Package : public ::testing::Test
{
protected:
    void SetUp() override
    {
        ASSERT_FALSE(installed().package.empty()) << "IONSVC_PACKAGE must name the package";
        ASSERT_EQ(package_field("Status"), "install ok installed")
            << "dpkg -i " << installed().package << " failed before the tests (see the test output)";
    }

    // dpkg's own words on failure: which maintainer script failed and why.
    static ::testing::AssertionResult dpkg_succeeds(std::vector<std::string> arguments)
    {
        const harness::CommandResult result = dpkg(std::move(arguments));
        if (result.exit_code == 0)
            return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << "dpkg exited with " << result.exit_code << ":\n"
                                             << result.out << result.err;
    }
};

TEST_F(Package, IsInstalledWithTheConfigAsAConffileAndOnlyTheSocketEnabled)
{
    EXPECT_THAT(package_field("Conffiles"), HasSubstr(installed().config + " "));
    EXPECT_EQ(is_enabled(kSocket), "enabled");
    // Started by the socket at the first connection, not at boot.
    EXPECT_EQ(is_enabled(kService), "disabled");
}

TEST_F(Package, AReinstallKeepsTheEditedConfigAndLeavesTheRunningDaemonAlone)
{
    ASSERT_EQ(systemctl({"start", kSocket}).exit_code, 0);
    // A connection starts the daemon.
    ASSERT_EQ(harness::run_command({installed().ctl, "heaps"}).exit_code, 0);
    const std::string daemon_pid = unit_property(kService, "MainPID");
    ASSERT_NE(daemon_pid, "0");
    const std::string shipped = read_file(installed().config);
    {
        std::ofstream config(installed().config, std::ios::app);
        config << "# edited by the administrator\n";
    }

    EXPECT_TRUE(dpkg_succeeds({"-i", installed().package}));

    EXPECT_THAT(read_file(installed().config), HasSubstr("# edited by the administrator"));
    EXPECT_EQ(unit_property(kService, "MainPID"), daemon_pid) << "the reinstall restarted the daemon";
    EXPECT_EQ(unit_property(kSocket, "ActiveState"), "active");
    std::ofstream(installed().config, std::ios::trunc) << shipped;
    systemctl({"stop", kSocket, kService});
}

TEST_F(Package, RemovalStopsTheSocketPurgeForgetsItAndAnInstallBringsEverythingBack)
{
    const gid_t daemon_group = group_id("ionsvc");
    ASSERT_NE(daemon_group, static_cast<gid_t>(-1));
    ASSERT_EQ(systemctl({"start", kSocket}).exit_code, 0);
    ASSERT_EQ(device_group(kHeapDevice), daemon_group);

    ASSERT_TRUE(dpkg_succeeds({"--remove", "ionsvc"}));
    EXPECT_EQ(unit_property(kSocket, "ActiveState"), "inactive");
    EXPECT_FALSE(std::filesystem::exists(kSocketPath));
    // The rule is gone, and the device is root's alone again.
    EXPECT_EQ(device_group(kHeapDevice), 0u);
    EXPECT_EQ(device_mode(kHeapDevice), 0600u);
    EXPECT_TRUE(std::filesystem::exists(installed().config)) << "removal (not purge) took the config";
    EXPECT_NE(::getpwnam("ionsvc"), nullptr) << "removal took the system user";

    ASSERT_TRUE(dpkg_succeeds({"--purge", "ionsvc"}));
    EXPECT_FALSE(std::filesystem::exists(installed().config)) << "purge left the config";
    EXPECT_FALSE(std::filesystem::exists(kEnablementState)) << "purge left the socket's enablement state";
    EXPECT_EQ(unit_property(kSocket, "LoadState"), "not-found");

    ASSERT_TRUE(dpkg_succeeds({"-i", installed().package}));
    EXPECT_EQ(is_enabled(kSocket), "enabled");
    EXPECT_EQ(unit_property(kSocket, "ActiveState"), "active");
    EXPECT_TRUE(std::filesystem::exists(kSocketPath));
    EXPECT_EQ(device_group(kHeapDevice), daemon_group);
    EXPECT_FALSE(read_file(installed().config).empty());
    EXPECT_EQ(harness::run_command({installed().ctl, "heaps"}).exit_code, 0);
    systemctl({"stop", kSocket, kService});
}

} // namespace
} // namespace ionsvc::vmtest
