// SPDX-License-Identifier: MIT
// ionsvc-bench on the kernel's real buffer sources: a smoke run (tiny
// counts, timing never asserted) per backend, as a child process that
// starts its own ionsvcd serving that backend alone. Its JSON must name the
// backend and hold the daemon, floor and raw cases with their ratios; ION's
// heaps must be empty again once it is gone.
#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_e2e.h"

namespace ionsvc::vmtest {
namespace {

// $<TARGET_FILE:ionsvc-bench>: the guest's root is the host's, so the
// host's build is where the guest finds it. Empty when it is not built.
constexpr const char *kBenchPath = IONSVC_BENCH_PATH;
constexpr const char *kTimeoutPath = "/usr/bin/timeout";
// A guard against a hung run, far above what a smoke run takes under TCG.
constexpr const char *kBenchTimeoutSeconds = "300";

struct BenchBackend
{
    std::string_view name; // --backend
    std::string heap;      // the heap the bench picks by default
};

class BenchSmoke : public IonVmTest
{
protected:
    void expect_smoke_run(const BenchBackend &backend);
};

// Why the running kernel lacks backend's device, or "" if it has it.
std::string why_absent(std::string_view backend, const KernelExpectations &expected,
                       const std::string &series)
{
    if (backend == "dma-heap" && !expected.has_dma_heap)
        return "Debian's " + series + " kernel has no /dev/dma_heap (CONFIG_DMABUF_HEAPS is off)";
    if (backend == "udmabuf" && !expected.has_udmabuf)
        return "Debian's " + series + " kernel has no /dev/udmabuf (CONFIG_UDMABUF is off)";
    return {};
}

bool is_positive_number(const json &value)
{
    return value.is_number() && value.get<double>() > 0;
}

void BenchSmoke::expect_smoke_run(const BenchBackend &backend)
{
    if (std::string_view{kBenchPath}.empty())
        GTEST_SKIP() << "ionsvc-bench is not built (IONSVC_BUILD_BENCH=OFF)";
    const std::string series = kernel_series();
    const auto expected = expectations_for(series);
    ASSERT_TRUE(expected) << "no expectations for kernel series " << series
                          << " (expectations_for() in daemon_e2e.cpp)";
    if (const std::string why = why_absent(backend.name, *expected, series); !why.empty())
        GTEST_SKIP() << why;

    const auto totals_before = heap_totals();
    // Two sizes, not the five of a smoke run: under TCG an 8 or 32 MiB ION or
    // udmabuf allocation takes tens of milliseconds, and the run a minute.
    const auto result = harness::run_command(
        {kTimeoutPath, "-k", "10", kBenchTimeoutSeconds, kBenchPath, "--smoke", "--sizes", "4K,1M",
         "--backend", std::string{backend.name}, "--daemon", harness::ionsvcd_path(), "--json"});
    ASSERT_EQ(result.exit_code, 0) << "ionsvc-bench --smoke --backend " << backend.name
                                   << " failed (124: it took over " << kBenchTimeoutSeconds
                                   << " s)\nstderr:\n"
                                   << result.err << "\nstdout:\n"
                                   << result.out;

    const json rows = json::parse(result.out, nullptr, false);
    ASSERT_TRUE(rows.is_array() && !rows.empty()) << "not a JSON array of cases:\n" << result.out;
    std::set<std::string> kinds;
    for (const json &row : rows) {
        ASSERT_TRUE(row.is_object() && row.contains("name") && row.contains("kind")) << row.dump();
        EXPECT_EQ(row.value("backend", ""), backend.name) << row.dump();
        EXPECT_EQ(row.value("heap", ""), backend.heap) << row.dump();
        const std::string kind = row["kind"].get<std::string>();
        kinds.insert(kind);
        if (kind != "daemon" && kind != "prompt")
            continue;
        // daemon/<size> and prompt/<size> against floor/<size> and raw/<size>;
        // prompt/<size>, which sends a Free per buffer, against floor2/<size> too.
        const std::string size = row["name"].get<std::string>().substr(kind.size() + 1);
        EXPECT_EQ(row.value("baseline", ""), "floor/" + size) << row.dump();
        EXPECT_TRUE(is_positive_number(row["ratio"])) << row.dump();
        EXPECT_EQ(is_positive_number(row["ratio_two_trips"]), kind == "prompt") << row.dump();
        EXPECT_TRUE(is_positive_number(row.value("ratio_raw", json{}))) << row.dump();
        for (const std::string baseline : {"floor/", "floor2/", "raw/"}) {
            EXPECT_TRUE(find_by(rows, "name", baseline + size) != nullptr)
                << "no case " << baseline << size << " beside " << row["name"];
        }
    }
    for (const std::string kind :
         {"daemon", "prompt", "floor", "floor2", "raw", "rtt", "batch", "concurrency", "scale"})
        EXPECT_TRUE(kinds.contains(kind)) << "no case of kind " << kind << " in:\n" << result.out;

    // The bench and its daemon are gone: whatever they allocated is freed.
    EXPECT_EQ(heap_totals(), totals_before) << "ION's heaps hold other totals than before the run";
}

TEST_F(BenchSmoke, RunsOnTheIonBackend)
{
    expect_smoke_run({"ion", "ion:" + std::string{kSystemHeap.name}});
}

TEST_F(BenchSmoke, RunsOnTheDmaHeapBackend)
{
    expect_smoke_run({"dma-heap", "dma-heap:system"});
}

TEST_F(BenchSmoke, RunsOnTheUdmabufBackend)
{
    expect_smoke_run({"udmabuf", "udmabuf"});
}

TEST_F(BenchSmoke, RunsOnTheMemfdBackend)
{
    expect_smoke_run({"memfd", "memfd"});
}

} // namespace
} // namespace ionsvc::vmtest
