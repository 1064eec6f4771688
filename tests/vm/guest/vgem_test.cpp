// SPDX-License-Identifier: MIT
// A real in-kernel importer that is not ours: vgem, through DRM PRIME.
//
// vgem's imported objects cannot be mapped through the card:
// DRM_IOCTL_MODE_MAP_DUMB ends in drm_gem_dumb_map_offset(), which refuses
// imported objects with EINVAL on 6.1 and 6.12 (vgem has no dumb_map_offset
// of its own since it moved to the shmem helpers). So the content is read
// back through DRM_IOCTL_PRIME_HANDLE_TO_FD, which must hand out the very
// dma-buf that was imported.
#include <linux/dma-buf.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "drm_abi.h"
#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

struct Imported
{
    Errno error;
    std::uint32_t handle = 0;
};

Imported import_into(int card, int dma_buf)
{
    drm::PrimeHandle prime{.handle = 0, .flags = 0, .fd = dma_buf};
    if (::ioctl(card, drm::kIoctlPrimeFdToHandle, &prime) != 0)
        return {last_errno(), 0};
    return {kSuccess, prime.handle};
}

Opened export_from(int card, std::uint32_t handle)
{
    drm::PrimeHandle prime{.handle = handle, .flags = drm::kCloexec | drm::kReadWrite, .fd = -1};
    Opened exported;
    if (::ioctl(card, drm::kIoctlPrimeHandleToFd, &prime) != 0)
        exported.error = last_errno();
    else
        exported.fd.reset(prime.fd);
    return exported;
}

Errno close_handle(int card, std::uint32_t handle)
{
    drm::GemClose close{.handle = handle, .pad = 0};
    return ioctl_errno(card, drm::kIoctlGemClose, &close);
}

::testing::AssertionResult same_file(int a, int b)
{
    struct stat first, second;
    if (::fstat(a, &first) != 0 || ::fstat(b, &second) != 0)
        return ::testing::AssertionFailure() << "fstat: " << to_string(last_errno());
    if (first.st_dev != second.st_dev || first.st_ino != second.st_ino)
        return ::testing::AssertionFailure() << "inode " << first.st_ino << " vs "
                                             << second.st_ino;
    return ::testing::AssertionSuccess();
}



class VgemImport : public IonVmTest
{
protected:
    void SetUp() override
    {
        IonVmTest::SetUp();
        if (HasFatalFailure())
            return;
        const char *expect = std::getenv("ION_VM_EXPECT_VGEM");
        if (expect == nullptr || std::string_view{expect} != "1")
            GTEST_SKIP() << "vgem is not loaded in this VM (ION_VM_EXPECT_VGEM="
                         << (expect != nullptr ? expect : "unset") << ")";
        std::string looked_at;
        card_ = open_vgem_card(looked_at);
        ASSERT_TRUE(card_.is_valid())
            << "ION_VM_EXPECT_VGEM=1 but no /dev/dri/card* is driven by vgem; looked at:"
            << (looked_at.empty() ? " nothing" : looked_at);
    }
    void TearDown() override { card_.reset(); }

    UniqueFD card_;
};

TEST_F(VgemImport, TurnsAnIonBufferIntoAHandleForTheSameBuffer)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    constexpr std::size_t size = 1 * MiB;
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), size, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), size, 10));

        // The import attaches vgem's device and maps the buffer for DMA.
        const Imported imported = import_into(card_.get(), buffer.fd.get());
        ASSERT_EQ(imported.error, kSuccess);
        EXPECT_NE(imported.handle, 0u);
        // PRIME knows the buffer: a second import is the same handle.
        const Imported again = import_into(card_.get(), buffer.fd.get());
        ASSERT_EQ(again.error, kSuccess);
        EXPECT_EQ(again.handle, imported.handle);

        auto exported = export_from(card_.get(), imported.handle);
        ASSERT_EQ(exported.error, kSuccess);
        EXPECT_TRUE(same_file(exported.fd.get(), buffer.fd.get()));
        EXPECT_TRUE(holds_pattern_through_mmap(exported.fd.get(), size, 10));

        EXPECT_EQ(close_handle(card_.get(), imported.handle), kSuccess);
        EXPECT_EQ(close_handle(card_.get(), imported.handle), Errno{EINVAL})
            << "the handle outlived DRM_IOCTL_GEM_CLOSE";
    }
}

TEST_F(VgemImport, KeepsTheBufferAliveUntilItsHandleIsClosed)
{
    constexpr std::size_t size = 256 * KiB;
    std::uint32_t handle = 0;
    {
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        AllocationResult buffer = allocate(ion.fd.get(), size, mask_of(kSystemHeap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), size, 11));
        const Imported imported = import_into(card_.get(), buffer.fd.get());
        ASSERT_EQ(imported.error, kSuccess);
        handle = imported.handle;
    }
    // Our fd and our client are closed; only vgem holds the buffer now.
    HeapView view = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_EQ(view.total, size) << view.text;

    {
        auto exported = export_from(card_.get(), handle);
        ASSERT_EQ(exported.error, kSuccess);
        EXPECT_EQ(dma_buf_size(exported.fd.get()), static_cast<off_t>(size));
        EXPECT_TRUE(holds_pattern_through_mmap(exported.fd.get(), size, 11));
    }

    ASSERT_EQ(close_handle(card_.get(), handle), kSuccess);
    view = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_EQ(view.total, 0u) << view.text;
}

} // namespace
} // namespace ionsvc::vmtest
