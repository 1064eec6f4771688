// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <vector>

#include <ionsvc/unique_fd.h>

namespace ionsvc {

// Spare fds (of /dev/null) held for the moment the daemon has no other:
// clients' buffers take every fd up to RLIMIT_NOFILE, and then accept()
// fails. Letting go of some lets one waiting client in, so that an admin
// still gets served and anyone else is told why instead of hanging.
class FdReserve
{
public:
    explicit FdReserve(std::size_t size) : size_(size) {}

    // Takes back what was let go, as far as fds are free again.
    void fill();
    // Lets go of count spare fds; false if it holds fewer.
    bool release(std::size_t count);
    std::size_t held() const { return spares_.size(); }

private:
    std::size_t size_;
    std::vector<UniqueFD> spares_;
};

} // namespace ionsvc
