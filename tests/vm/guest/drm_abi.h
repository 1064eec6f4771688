// SPDX-License-Identifier: MIT
// The few DRM ioctls the vgem tests use.
//
// Debian's linux-libc-dev leaves out <drm/*.h> (libdrm-dev ships them), so
// the tests cannot count on either being installed. These layouts are
// stable kernel ABI; when a system copy of drm.h is present, the
// static_asserts below hold this file to it.
#pragma once

#include <fcntl.h>
#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace ionsvc::vmtest::drm {

struct Version
{
    int version_major;
    int version_minor;
    int version_patchlevel;
    std::size_t name_len;
    char *name;
    std::size_t date_len;
    char *date;
    std::size_t desc_len;
    char *desc;
};

struct GemClose
{
    std::uint32_t handle;
    std::uint32_t pad;
};

struct PrimeHandle
{
    std::uint32_t handle;
    std::uint32_t flags; // kCloexec | kReadWrite, for handle -> fd only
    std::int32_t fd;
};

inline constexpr unsigned kIoctlBase = 'd';
inline constexpr unsigned long kIoctlVersion = _IOWR(kIoctlBase, 0x00, Version);
inline constexpr unsigned long kIoctlGemClose = _IOW(kIoctlBase, 0x09, GemClose);
inline constexpr unsigned long kIoctlPrimeHandleToFd = _IOWR(kIoctlBase, 0x2d, PrimeHandle);
inline constexpr unsigned long kIoctlPrimeFdToHandle = _IOWR(kIoctlBase, 0x2e, PrimeHandle);
inline constexpr std::uint32_t kCloexec = O_CLOEXEC;
inline constexpr std::uint32_t kReadWrite = O_RDWR;

} // namespace ionsvc::vmtest::drm

#if __has_include(<drm/drm.h>)
#include <drm/drm.h>
#define IONSVC_VMTEST_SYSTEM_DRM 1
#elif __has_include(<libdrm/drm.h>)
#include <libdrm/drm.h>
#define IONSVC_VMTEST_SYSTEM_DRM 1
#endif

#ifdef IONSVC_VMTEST_SYSTEM_DRM
static_assert(ionsvc::vmtest::drm::kIoctlVersion == DRM_IOCTL_VERSION);
static_assert(ionsvc::vmtest::drm::kIoctlGemClose == DRM_IOCTL_GEM_CLOSE);
static_assert(ionsvc::vmtest::drm::kIoctlPrimeHandleToFd == DRM_IOCTL_PRIME_HANDLE_TO_FD);
static_assert(ionsvc::vmtest::drm::kIoctlPrimeFdToHandle == DRM_IOCTL_PRIME_FD_TO_HANDLE);
static_assert(ionsvc::vmtest::drm::kCloexec == DRM_CLOEXEC);
static_assert(ionsvc::vmtest::drm::kReadWrite == DRM_RDWR);
static_assert(sizeof(ionsvc::vmtest::drm::Version) == sizeof(drm_version));
static_assert(offsetof(ionsvc::vmtest::drm::Version, name) == offsetof(drm_version, name));
static_assert(sizeof(ionsvc::vmtest::drm::PrimeHandle) == sizeof(drm_prime_handle));
static_assert(offsetof(ionsvc::vmtest::drm::PrimeHandle, fd) == offsetof(drm_prime_handle, fd));
static_assert(sizeof(ionsvc::vmtest::drm::GemClose) == sizeof(drm_gem_close));
#endif
