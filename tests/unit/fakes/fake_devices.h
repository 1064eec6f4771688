// SPDX-License-Identifier: MIT
// Stand-ins for the device nodes and dma-bufs this host does not have, for
// tests that mock the ion, dma-heap and udmabuf backends' syscalls.
#pragma once

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <sys/eventfd.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "fd_count.h"
#include "backends/heap.h"
#include "fakes/mock_syscalls.h"

namespace ionsvc::testing {

// A real fd standing in for one a device makes: a leak of it shows in
// open_fd_count().
inline UniqueFD stand_in_fd()
{
    return UniqueFD{::eventfd(0, EFD_CLOEXEC)};
}

// The device node at path opens once, read-write and close-on-exec, as a
// stand-in; returns the stand-in's number.
inline int expect_device(MockSyscalls &syscalls, const std::string &path)
{
    UniqueFD device = stand_in_fd();
    const int number = device.get();
    EXPECT_CALL(syscalls, open(::testing::StrEq(path), O_RDWR | O_CLOEXEC))
        .WillOnce(::testing::Return(::testing::ByMove(Expected<UniqueFD, int>{std::move(device)})));
    return number;
}

// An open() action that fails with error (positive), as often as it is
// called: Return() cannot repeat a result that only moves.
inline auto open_fails(int error)
{
    return [error](const char *, int) -> Expected<UniqueFD, int> { return Unexpected{-error}; };
}

// An ioctl() action for the ioctls that return a new dma-buf in the fd
// field of their Request: a stand-in, whose number goes to *number.
template<typename Request>
auto hand_out_dma_buf(int *number, Request *seen = nullptr)
{
    return [number, seen](int, unsigned long, void *arg) {
        auto *request = static_cast<Request *>(arg);
        if (seen)
            *seen = *request;
        *number = stand_in_fd().release();
        request->fd = static_cast<decltype(request->fd)>(*number);
        return 0;
    };
}

// A dma-buf name, as DMA_BUF_SET_NAME_B was given it for a buffer.
struct NameGiven
{
    int fd;
    std::string name;
};

// DMA_BUF_SET_NAME_B succeeds (the stand-ins cannot take it) and each name
// given goes to *names. An expectation, not a default, so that it still
// holds once a test expects other ioctls.
inline void accept_names(MockSyscalls &syscalls, std::vector<NameGiven> *names = nullptr)
{
    using ::testing::_;
    EXPECT_CALL(syscalls, ioctl(_, DMA_BUF_SET_NAME_B, _))
        .Times(::testing::AnyNumber())
        .WillRepeatedly([names](int fd, unsigned long, void *arg) {
            if (names)
                names->push_back({fd, static_cast<const char *>(arg)});
            return 0;
        });
}

// names holds one name, given to the buffer fd.
inline void expect_one_name(const std::vector<NameGiven> &names, int fd, const std::string &name)
{
    ASSERT_EQ(names.size(), 1u);
    EXPECT_EQ(names[0].fd, fd);
    EXPECT_EQ(names[0].name, name);
}

// An allocation of a 64 KiB buffer from heap fails with error (-errno) and
// leaves no fd open.
inline void expect_failure_without_leak(Heap &heap, int error)
{
    const std::size_t before = test_support::open_fd_count();
    auto fd = heap.allocate(64 * 1024, 0, "x");
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error(), error);
    EXPECT_EQ(test_support::open_fd_count(), before);
}

} // namespace ionsvc::testing
