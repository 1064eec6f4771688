// SPDX-License-Identifier: MIT
// `ionsvc-ctl stats --format openmetrics|prometheus` against a real daemon,
// read back by the Prometheus project's own parsers (parse_metrics.py).
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cgroups.h"
#include "harness.h"

namespace ionsvc::testing {
namespace {

using nlohmann::json;

constexpr int kSetupFailure = 90;

// The families of a metrics file, as parse_metrics.py reads them; null if
// the parser rejected it (its words in the test's failure).
json parse_metrics(const std::string &format, const std::string &path)
{
    const CommandResult parsed = run_command({"/usr/bin/python3", IONSVC_PARSE_METRICS, format, path});
    EXPECT_EQ(parsed.exit_code, 0) << parsed.err;
    return parsed.exit_code == 0 ? json::parse(parsed.out) : json(nullptr);
}

// The value of the sample of family with these labels; -1 if none.
double sample(const json &families, const std::string &family, const json &labels = json::object())
{
    if (!families.contains(family))
        return -1;
    for (const json &entry : families[family]["samples"]) {
        if (entry[1] == labels)
            return entry[2].get<double>();
    }
    return -1;
}

class Metrics : public ::testing::Test
{
protected:
    void SetUp() override
    {
        IONSVC_NEED_ROOT("to run clients as other users and in a cgroup of their own");
        ASSERT_TRUE(cgroup_.made()) << cgroup_.error();
        // Any user's ionsvc-ctl writes its file here.
        ASSERT_EQ(::chmod(output_.path().c_str(), 01777), 0);
    }

    // ionsvc-ctl stats --format format --output FILE, as uid (root if 0).
    std::string metrics_file(const std::string &format, uid_t uid = 0)
    {
        const std::string path = output_.path() + "/metrics." + format + "." + std::to_string(uid);
        const std::vector<std::string> argv = {ionsvc_ctl_path(), "--socket", open_.daemon().socket_path(),
                                               "stats", "--format", format, "--output", path};
        ChildProcess ctl([&] {
            if (uid != 0 && !become_user(uid))
                return kSetupFailure;
            return run_command(argv).exit_code;
        });
        EXPECT_EQ(ctl.wait(), 0);
        return path;
    }

    // A cgroup whose name needs escaping in a label value.
    TestCgroup cgroup_{"ionsvc-test-" + std::to_string(::getpid()) + "-\"quoted\\\\\".service"};
    OpenDaemon open_;
    TemporaryDirectory output_;
};

TEST_F(Metrics, OpenMetricsOutputParsesAndCarriesWhatTheDaemonHolds)
{
    Signal ready, release;
    ChildProcess holder([&] {
        release.close_write_end();
        if (cgroup_.add() < 0 || !become_user(2001))
            return kSetupFailure;
        auto client = open_.daemon().connect("holder");
        if (!client.allocate({.size = 64 * 1024, .count = 2}) || client.allocate({.heap = "carveout", .size = 4096}))
            return kSetupFailure;
        ready.raise();
        release.wait();
        return 0;
    });
    ASSERT_TRUE(ready.wait()) << holder.wait();

    const json families = parse_metrics("openmetrics", metrics_file("openmetrics"));
    ASSERT_FALSE(families.is_null());
    const json memfd = {{"heap", "memfd"}, {"backend", "memfd"}};
    EXPECT_EQ(families["ionsvc_heap_live_bytes"]["unit"], "bytes");
    EXPECT_EQ(sample(families, "ionsvc_heap_live_bytes", memfd), 128 * 1024);
    EXPECT_EQ(sample(families, "ionsvc_heap_live_buffers", memfd), 2);
    EXPECT_EQ(sample(families, "ionsvc_uid_held_bytes", {{"uid", "2001"}}), 128 * 1024);
    const std::string unit = cgroup_.path().substr(1);
    EXPECT_EQ(sample(families, "ionsvc_cgroup_held_bytes", {{"cgroup", cgroup_.path()}, {"unit", unit}}), 128 * 1024)
        << "the label value, unescaped by the parser, is the cgroup's path: " << families["ionsvc_cgroup_held_bytes"];
    EXPECT_EQ(families["ionsvc_allocations"]["type"], "counter");
    EXPECT_GE(sample(families, "ionsvc_allocations"), 2);
    EXPECT_GE(sample(families, "ionsvc_request_refusals", {{"status", "NO_SUCH_HEAP"}}), 1);

    const json prometheus = parse_metrics("prometheus", metrics_file("prometheus"));
    ASSERT_FALSE(prometheus.is_null());
    EXPECT_EQ(sample(prometheus, "ionsvc_heap_live_bytes", memfd), 128 * 1024);

    const json as_user = parse_metrics("openmetrics", metrics_file("openmetrics", 2002));
    ASSERT_FALSE(as_user.is_null());
    EXPECT_EQ(sample(as_user, "ionsvc_uid_held_bytes", {{"uid", "2001"}}), -1) << "another uid's clients are hidden";
    EXPECT_EQ(sample(as_user, "ionsvc_heap_live_bytes", memfd), 0);
    EXPECT_FALSE(as_user.contains("ionsvc_allocations")) << "the daemon's counters are everyone's: admins only";
    release.raise();
    EXPECT_EQ(holder.wait(), 0);
}

} // namespace
} // namespace ionsvc::testing
