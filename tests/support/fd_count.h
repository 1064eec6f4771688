// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <string>

namespace ionsvc::test_support {

// Open fds of a process, from /proc/<pid>/fd (the count includes the
// directory's own fd while it is read, the same every time).
inline std::size_t open_fd_count(pid_t pid = ::getpid())
{
    std::size_t count = 0;
    for ([[maybe_unused]] const auto &entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++count;
    return count;
}

} // namespace ionsvc::test_support
