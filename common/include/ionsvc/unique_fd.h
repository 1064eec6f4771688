// SPDX-License-Identifier: MIT
#pragma once

#include <unistd.h>

#include <utility>

namespace ionsvc {

// Sole owner of one file descriptor; closes it on destruction.
//
// Every fd in ionsvc lives in a UniqueFD. Functions that create an fd return
// one; functions that take ownership take one by value; get() lends the
// number for a syscall and never transfers ownership.
class UniqueFD
{
public:
    UniqueFD() noexcept = default;
    explicit UniqueFD(int fd) noexcept : fd_(fd) {}

    UniqueFD(UniqueFD &&other) noexcept : fd_(other.release()) {}
    UniqueFD &operator=(UniqueFD &&other) noexcept
    {
        reset(other.release());
        return *this;
    }

    UniqueFD(const UniqueFD &) = delete;
    UniqueFD &operator=(const UniqueFD &) = delete;

    ~UniqueFD() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool is_valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return is_valid(); }

    // Gives up ownership without closing; the caller now owns the number.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    // Closes the owned fd (if any) and takes ownership of fd.
    void reset(int fd = -1) noexcept
    {
        const int old = std::exchange(fd_, fd);
        if (old >= 0 && old != fd)
            ::close(old);
    }

private:
    int fd_ = -1;
};

} // namespace ionsvc
