// SPDX-License-Identifier: MIT
#include "child_process.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

#include <gtest/gtest.h>

namespace ionsvc::test_support {

int exit_code_from_wait_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

ChildProcess::ChildProcess(const std::function<int()> &body)
{
    // Else buffered output would be written twice, once by each process.
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
        int code = 99;
        try {
            code = body();
        } catch (...) {
        }
        ::_exit(code);
    }
    if (pid_ < 0)
        ADD_FAILURE() << "fork: " << std::strerror(errno);
}

ChildProcess::ChildProcess(ChildProcess &&other) noexcept : pid_(std::exchange(other.pid_, -1)) {}

ChildProcess::~ChildProcess()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        wait();
    }
}

int ChildProcess::wait()
{
    if (pid_ <= 0)
        return -1;
    int status = 0;
    pid_t reaped;
    do {
        reaped = ::waitpid(pid_, &status, 0);
    } while (reaped < 0 && errno == EINTR);
    pid_ = -1;
    return reaped < 0 ? -1 : exit_code_from_wait_status(status);
}

} // namespace ionsvc::test_support
