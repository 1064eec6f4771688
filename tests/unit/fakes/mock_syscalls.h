// SPDX-License-Identifier: MIT
#pragma once

#include <gmock/gmock.h>

#include "syscalls/syscalls.h"

namespace ionsvc::testing {

// Calls the kernel unless a test says otherwise: tests fault exactly the
// calls they name (ENOMEM, EMFILE, ...), which a real kernel will not do on
// demand.
class MockSyscalls : public Syscalls
{
public:
    MockSyscalls()
    {
        using ::testing::_;
        ON_CALL(*this, memfd_create(_, _)).WillByDefault([](const char *name, unsigned int flags) {
            return real_syscalls().memfd_create(name, flags);
        });
        ON_CALL(*this, ftruncate(_, _)).WillByDefault([](int fd, off_t length) {
            return real_syscalls().ftruncate(fd, length);
        });
        ON_CALL(*this, add_seals(_, _)).WillByDefault([](int fd, int seals) {
            return real_syscalls().add_seals(fd, seals);
        });
        ON_CALL(*this, fallocate(_, _)).WillByDefault([](int fd, off_t length) {
            return real_syscalls().fallocate(fd, length);
        });
        ON_CALL(*this, open(_, _)).WillByDefault([](const char *path, int flags) {
            return real_syscalls().open(path, flags);
        });
        ON_CALL(*this, ioctl(_, _, _)).WillByDefault([](int fd, unsigned long request, void *arg) {
            return real_syscalls().ioctl(fd, request, arg);
        });
        ON_CALL(*this, list_char_devices(_)).WillByDefault([](const char *directory) {
            return real_syscalls().list_char_devices(directory);
        });
        ON_CALL(*this, read_fdinfo(_, _)).WillByDefault([](int fd, std::span<char> text) {
            return real_syscalls().read_fdinfo(fd, text);
        });
        ON_CALL(*this, read_text(_)).WillByDefault([](const char *path) {
            return real_syscalls().read_text(path);
        });
        ON_CALL(*this, fd_link(_)).WillByDefault([](int fd) { return real_syscalls().fd_link(fd); });
        ON_CALL(*this, inode(_)).WillByDefault([](int fd) { return real_syscalls().inode(fd); });
        ON_CALL(*this, get_random(_)).WillByDefault([](std::span<std::byte> bytes) {
            return real_syscalls().get_random(bytes);
        });
    }

    MOCK_METHOD((Expected<UniqueFD, int>), memfd_create, (const char *name, unsigned int flags),
                (override));
    MOCK_METHOD(int, ftruncate, (int fd, off_t length), (override));
    MOCK_METHOD(int, add_seals, (int fd, int seals), (override));
    MOCK_METHOD(int, fallocate, (int fd, off_t length), (override));
    MOCK_METHOD((Expected<UniqueFD, int>), open, (const char *path, int flags), (override));
    MOCK_METHOD(int, ioctl, (int fd, unsigned long request, void *arg), (override));
    MOCK_METHOD((Expected<std::vector<std::string>, int>), list_char_devices, (const char *directory),
                (override));
    MOCK_METHOD((Expected<std::size_t, int>), read_fdinfo, (int fd, std::span<char> text), (override));
    MOCK_METHOD((Expected<std::string, int>), read_text, (const char *path), (override));
    MOCK_METHOD((Expected<std::string, int>), fd_link, (int fd), (override));
    MOCK_METHOD((Expected<std::uint64_t, int>), inode, (int fd), (override));
    MOCK_METHOD(int, get_random, (std::span<std::byte> bytes), (override));
};

} // namespace ionsvc::testing
