// SPDX-License-Identifier: MIT
// A forked child running a function, for tests that need a second process.
#pragma once

#include <functional>
#include <sys/types.h>

namespace ionsvc::test_support {

// The exit code of a waitpid() status, or 128 + signal for a killed child.
int exit_code_from_wait_status(int status);

// Forks and runs body in the child, which exits with its result (99 if it
// threw). A child still running when this is destroyed is killed and reaped.
class ChildProcess
{
public:
    explicit ChildProcess(const std::function<int()> &body);
    ~ChildProcess();
    ChildProcess(ChildProcess &&other) noexcept;
    ChildProcess(const ChildProcess &) = delete;
    ChildProcess &operator=(const ChildProcess &) = delete;

    pid_t pid() const { return pid_; }
    // The exit code, or 128 + signal for a child that was killed; -1 if
    // there is no child to wait for.
    int wait();

private:
    pid_t pid_ = -1;
};

} // namespace ionsvc::test_support
