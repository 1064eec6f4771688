// SPDX-License-Identifier: MIT
#include "results_listener.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

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
                std::fprintf(stderr, "cannot append to the results file: %s\n",
                             to_string(last_errno()).c_str());
                return;
            }
            written += static_cast<std::size_t>(n);
        }
        ::fdatasync(file_.get());
    }

    UniqueFD file_;
};

} // namespace

bool report_results_to(const char *path, const char *program)
{
    if (path == nullptr || *path == '\0')
        return true;
    // O_NOCTTY: a serial port must not become this process's terminal.
    UniqueFD file{::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644)};
    if (!file) {
        std::fprintf(stderr, "%s: cannot open the results file %s: %s\n", program, path,
                     to_string(last_errno()).c_str());
        return false;
    }
    ::testing::UnitTest::GetInstance()->listeners().Append(
        new ResultsFileListener(std::move(file)));
    return true;
}

} // namespace ionsvc::vmtest
