// SPDX-License-Identifier: MIT
// Entry point of ionsvc_systemd_test, which runs inside a booted Debian
// guest where `cmake --install` put ionsvc: loads ion_simple before the
// first test (so that udev and the daemon find /dev/ion), unloads it after
// the last (which fails if the daemon or a client leaked a buffer), and
// reports each test to the harness's results port.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "results_listener.h"
#include "systemd_guest.h"
#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

class IonModuleEnvironment : public CheckedEnvironment
{
public:
    void TearDown() override
    {
        if (module_is_loaded(kIonModule)) {
            EXPECT_EQ(unload_module(kIonModule), kSuccess)
                << "unloading ion_simple after the last test: the daemon or a client leaked "
                   "a buffer";
        }
    }

private:
    std::string prepare() override
    {
        if (module_directory().empty())
            return "ION_VM_MODULE_DIR is not set; it names the directory with ion_simple.ko";
        const Errno loaded = load_module(module_file(kIonModule), kStandardIonParameters);
        if (loaded != kSuccess)
            return "finit_module(" + module_file(kIonModule) + "): " + to_string(loaded);
        // udev applies the installed rule to /dev/ion; the tests look at
        // the node only after it has.
        const harness::CommandResult settled = harness::run_command({"/usr/bin/udevadm", "settle"});
        if (settled.exit_code != 0)
            return "udevadm settle failed: " + settled.err;
        return {};
    }
};

} // namespace
} // namespace ionsvc::vmtest

int main(int argc, char **argv)
{
    using namespace ionsvc::vmtest;
    ::testing::InitGoogleTest(&argc, argv);
    if (!report_results_to(std::getenv("ION_VM_RESULTS"), "ionsvc_systemd_test"))
        return 2;
    // Environments run only when tests run: --gtest_list_tests loads nothing.
    ::testing::AddGlobalTestEnvironment(new IonModuleEnvironment);
    return RUN_ALL_TESTS();
}
