// SPDX-License-Identifier: MIT
#include "server/fd_reserve.h"

#include <fcntl.h>

namespace ionsvc {

void FdReserve::fill()
{
    while (spares_.size() < size_) {
        UniqueFD spare{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
        if (!spare)
            return; // still none free: the next fill tries again
        spares_.push_back(std::move(spare));
    }
}

bool FdReserve::release(std::size_t count)
{
    if (spares_.size() < count)
        return false;
    spares_.resize(spares_.size() - count);
    return true;
}

} // namespace ionsvc
