// SPDX-License-Identifier: MIT
// Entry point of ion_vm_test: loads the modules around the whole run and
// reports each test's outcome to the harness's results file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "results_listener.h"
#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

// Loads ion_simple (standard parameters) and the importer before the first
// test and unloads both after the last; the unload proves nothing leaked.
class ModulesEnvironment : public CheckedEnvironment
{
public:
    void TearDown() override
    {
        if (module_is_loaded(kImporterModule)) {
            EXPECT_EQ(unload_module(kImporterModule), kSuccess) << "unloading the importer";
        }
        if (module_is_loaded(kIonModule)) {
            EXPECT_EQ(unload_module(kIonModule), kSuccess)
                << "unloading ion_simple after the last test: a client or buffer leaked";
        }
    }

private:
    std::string prepare() override
    {
        if (::sysconf(_SC_PAGESIZE) != static_cast<long>(kPageSize))
            return "the tests assume 4 KiB pages";
        if (module_directory().empty())
            return "ION_VM_MODULE_DIR is not set; it names the directory with ion_simple.ko "
                   "and ion_test_importer.ko";
        for (const char *module : {kImporterModule, kIonModule}) {
            // Left over from a run that died: start from a clean load.
            if (module_is_loaded(module)) {
                const Errno unloaded = unload_module(module);
                if (unloaded != kSuccess)
                    return std::string{module} + " was already loaded and delete_module failed: " +
                           to_string(unloaded);
            }
        }
        const Errno ion = load_module(module_file(kIonModule), kStandardIonParameters);
        if (ion != kSuccess)
            return "finit_module(" + module_file(kIonModule) + ", \"" + kStandardIonParameters +
                   "\"): " + to_string(ion);
        const Errno importer = load_module(module_file(kImporterModule), "");
        if (importer != kSuccess)
            return "finit_module(" + module_file(kImporterModule) + "): " + to_string(importer);
        if (!path_exists("/dev/ion"))
            return "ion_simple loaded but /dev/ion does not exist";
        if (!path_exists(std::string{kDebugfsIon}))
            return std::string{kDebugfsIon} + " does not exist; is debugfs mounted?";
        return {};
    }
};

} // namespace
} // namespace ionsvc::vmtest

int main(int argc, char **argv)
{
    using namespace ionsvc::vmtest;

    // The unrelated process of the fd-passing test: no gtest, no modules.
    if (argc == 2 && std::string_view{argv[1]} == kReaderOption)
        return run_fd_reader();

    ::testing::InitGoogleTest(&argc, argv);

    if (!report_results_to(std::getenv("ION_VM_RESULTS"), "ion_vm_test"))
        return 2;

    // Environments run only when tests run: --gtest_list_tests loads nothing.
    ::testing::AddGlobalTestEnvironment(new ModulesEnvironment);
    return RUN_ALL_TESTS();
}
