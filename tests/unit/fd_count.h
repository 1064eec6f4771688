// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <string>

namespace ionsvc::testing {

// Open fds of a process, from /proc/<pid>/fd.
inline std::size_t open_fd_count(pid_t pid = ::getpid())
{
    std::size_t count = 0;
    for ([[maybe_unused]] const auto &entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++count;
    return count;
}

} // namespace ionsvc::testing
