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

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

// Appends "PASS|FAIL|SKIP <Suite>.<Test>[ reason]" per finished test. Each
// line is one write(2) to an O_APPEND file, synced, so what was written
// survives a test that takes the VM down with it.
class ResultsFileListener : public ::testing::EmptyTestEventListener
{
public:
    explicit ResultsFileListener(UniqueFD file) : file_(std::move(file)) {}

    void OnTestEnd(const ::testing::TestInfo &info) override
    {
        const ::testing::TestResult &result = *info.result();
        const std::string name = std::string{info.test_suite_name()} + "." + info.name();
        std::string line;
        if (result.Failed())
            line = "FAIL " + name;
        else if (result.Skipped())
            line = "SKIP " + name + " " + skip_reason(result);
        else
            line = "PASS " + name;
        line += '\n';
        append(line);
    }

private:
    static std::string skip_reason(const ::testing::TestResult &result)
    {
        std::string reason;
        for (int i = 0; i < result.total_part_count(); ++i) {
            const ::testing::TestPartResult &part = result.GetTestPartResult(i);
            if (!part.skipped())
                continue;
            if (!reason.empty())
                reason += ' ';
            reason += part.message();
        }
        // One line: the harness reads the reason to the end of the line.
        for (char &c : reason) {
            if (c == '\n' || c == '\r' || c == '\t')
                c = ' ';
        }
        reason = trim(reason);
        return reason.empty() ? "skipped" : reason;
    }

    void append(const std::string &line)
    {
        std::size_t written = 0;
        while (written < line.size()) {
            const ssize_t n = ::write(file_.get(), line.data() + written, line.size() - written);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                std::fprintf(stderr, "ion_vm_test: cannot append to ION_VM_RESULTS: %s\n",
                             to_string(last_errno()).c_str());
                return;
            }
            written += static_cast<std::size_t>(n);
        }
        ::fdatasync(file_.get());
    }

    UniqueFD file_;
};

// Loads ion_simple (standard parameters) and the importer before the first
// test and unloads both after the last; the unload proves nothing leaked.
class ModulesEnvironment : public ::testing::Environment
{
public:
    void SetUp() override
    {
        set_environment_error(prepare());
        if (!environment_error().empty())
            ADD_FAILURE() << environment_error();
    }

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
    static std::string prepare()
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

    const char *results = std::getenv("ION_VM_RESULTS");
    if (results != nullptr && *results != '\0') {
        ionsvc::UniqueFD file{::open(results, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)};
        if (!file) {
            std::fprintf(stderr, "ion_vm_test: cannot open ION_VM_RESULTS=%s: %s\n", results,
                         to_string(last_errno()).c_str());
            return 2;
        }
        ::testing::UnitTest::GetInstance()->listeners().Append(
            new ResultsFileListener(std::move(file)));
    }

    // Environments run only when tests run: --gtest_list_tests loads nothing.
    ::testing::AddGlobalTestEnvironment(new ModulesEnvironment);
    return RUN_ALL_TESTS();
}
