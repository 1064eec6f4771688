// SPDX-License-Identifier: MIT
// Entry point of ionsvc_systemd_test, which runs inside a booted Debian
// guest where `cmake --install` put ionsvc: loads ion_simple before the
// first test (so that udev and the daemon find /dev/ion), unloads it after
// the last (which fails if the daemon or a client leaked a buffer), and
// reports each test to the harness's results port.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

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

// `ionsvc_systemd_test --hold BYTES...`: a client for the tests to start as
// a service of its own (systemd-run). Allocates each size in turn from the
// default heap, saying on stderr (the unit's journal) which were refused
// and why, and holds what it got until SIGTERM.
int hold(int count, char **sizes)
{
    auto client = bufclient::Client::connect({.client_name = "holder"});
    if (!client) {
        std::fprintf(stderr, "connect: %s\n", client.error().message.c_str());
        return 2;
    }
    std::vector<bufclient::Buffer> held;
    for (int i = 0; i < count; ++i) {
        auto buffers = client->allocate({.size = std::strtoull(sizes[i], nullptr, 10)});
        if (!buffers) {
            std::fprintf(stderr, "refused %s bytes: %s\n", sizes[i], buffers.error().message.c_str());
            continue;
        }
        held.push_back(std::move(buffers->front()));
    }
    std::fprintf(stderr, "holding %zu buffers\n", held.size());
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, nullptr);
    int signal = 0;
    sigwait(&stop, &signal);
    return 0;
}

int main(int argc, char **argv)
{
    using namespace ionsvc::vmtest;
    if (argc >= 3 && std::string_view{argv[1]} == "--hold")
        return hold(argc - 2, argv + 2);
    ::testing::InitGoogleTest(&argc, argv);
    if (!report_results_to(std::getenv("ION_VM_RESULTS"), "ionsvc_systemd_test"))
        return 2;
    // Environments run only when tests run: --gtest_list_tests loads nothing.
    ::testing::AddGlobalTestEnvironment(new IonModuleEnvironment);
    return RUN_ALL_TESTS();
}
