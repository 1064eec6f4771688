// SPDX-License-Identifier: MIT
// `ionsvc-ctl dmabufs` on a real kernel: dma-bufs of every exporter the
// kernel has (ion_simple, the system dma-heap, udmabuf, vgem), held by
// forked processes by fd, by mapping or both, one shared by three, and one
// still mapped after all its fds are closed. The host-built ionsvc-ctl
// reads /proc (no daemon) and its JSON must say exactly what the test set
// up, with sizes and inodes as the kernel's fdinfo gives them.
//
// Debian's 6.1 has neither /dev/dma_heap nor /dev/udmabuf: there the plan
// leaves those buffers out, and the test of those sources skips, saying so.
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_e2e.h"
#include "drm_abi.h"

namespace ionsvc::vmtest {
namespace {

// ---------------------------------------------------------------- buffers

// DRM_IOCTL_MODE_CREATE_DUMB, which drm_abi.h does not carry: vgem makes
// shmem-backed objects of it that PRIME exports as dma-bufs.
struct CreateDumb
{
    std::uint32_t height, width, bpp, flags;
    std::uint32_t handle, pitch;
    std::uint64_t size;
};
constexpr unsigned long kIoctlModeCreateDumb = _IOWR(drm::kIoctlBase, 0xB2, CreateDumb);

// One dma-buf the parent made, with what the kernel says of it.
struct Made
{
    std::string source;
    UniqueFD fd;
    std::uint64_t size = 0;  // fdinfo's size:
    std::uint64_t inode = 0; // fdinfo's ino:
    std::string exporter;    // fdinfo's exp_name:
};

// Fills in what fdinfo says; "" or what is missing.
std::string describe(Made &made)
{
    const auto size = fdinfo_field(::getpid(), made.fd.get(), "size");
    const auto inode = fdinfo_field(::getpid(), made.fd.get(), "ino");
    const auto exporter = fdinfo_field(::getpid(), made.fd.get(), "exp_name");
    if (!size || !inode || !exporter)
        return made.source + ": its fdinfo has no size, ino or exp_name";
    made.size = std::stoull(*size);
    made.inode = std::stoull(*inode);
    made.exporter = *exporter;
    return "";
}

std::optional<Made> from_ion(std::size_t size)
{
    auto ion = open_ion();
    if (ion.error != kSuccess)
        return std::nullopt;
    AllocationResult buffer = allocate(ion.fd.get(), size, mask_of(kSystemHeap));
    if (buffer.error != kSuccess)
        return std::nullopt;
    return Made{"ion", std::move(buffer.fd)};
}

std::optional<Made> from_dma_heap(std::size_t size)
{
    auto heap = open_file("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    dma_heap_allocation_data data{.len = size, .fd = 0, .fd_flags = O_RDWR | O_CLOEXEC, .heap_flags = 0};
    if (heap.error != kSuccess || ioctl_errno(heap.fd.get(), DMA_HEAP_IOCTL_ALLOC, &data) != kSuccess)
        return std::nullopt;
    return Made{"dma-heap", UniqueFD(static_cast<int>(data.fd))};
}

std::optional<Made> from_udmabuf(std::size_t size)
{
    UniqueFD memfd(::memfd_create("dmabufs-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    auto device = open_file("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (!memfd || device.error != kSuccess || ::ftruncate(memfd.get(), static_cast<off_t>(size)) != 0
        || ::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK) != 0)
        return std::nullopt;
    udmabuf_create create{.memfd = static_cast<std::uint32_t>(memfd.get()), .flags = UDMABUF_FLAGS_CLOEXEC,
                          .offset = 0, .size = size};
    const int fd = ::ioctl(device.fd.get(), UDMABUF_CREATE, &create);
    if (fd < 0)
        return std::nullopt;
    return Made{"udmabuf", UniqueFD(fd)};
}

// A 64x64 32-bit dumb object of vgem, exported; its GEM handle stays open
// on card (and keeps the dma-buf alive) until card is closed.
std::optional<Made> from_vgem(int card)
{
    CreateDumb dumb{.height = 64, .width = 64, .bpp = 32, .flags = 0, .handle = 0, .pitch = 0, .size = 0};
    if (ioctl_errno(card, kIoctlModeCreateDumb, &dumb) != kSuccess)
        return std::nullopt;
    drm::PrimeHandle prime{.handle = dumb.handle, .flags = drm::kCloexec | drm::kReadWrite, .fd = -1};
    if (ioctl_errno(card, drm::kIoctlPrimeHandleToFd, &prime) != kSuccess)
        return std::nullopt;
    return Made{"vgem", UniqueFD(prime.fd)};
}

// ---------------------------------------------------------------- holders

// What one child holds of one buffer.
struct Hold
{
    const Made *buffer;
    int fds;  // 0, 1 or 2 (a dup)
    bool map; // a shared mapping of all of it
};

// A forked process named comm that holds what plan says, with every other
// fd closed, until the parent lets go of its socket.
class Holder
{
public:
    Holder(std::string comm, std::vector<Hold> plan) : comm_(std::move(comm)), plan_(std::move(plan))
    {
        SocketPair pair = socket_pair();
        const int child_end = pair.second.get();
        parent_end_ = std::move(pair.first);
        child_.emplace([&] { return hold(child_end); });
    }

    pid_t pid() const { return child_->pid(); }
    const std::string &comm() const { return comm_; }

    // "" once the child says it holds everything, else why not.
    std::string ready() const
    {
        pollfd wait{.fd = parent_end_.get(), .events = POLLIN, .revents = 0};
        char byte = 0;
        if (::poll(&wait, 1, kHangTimeoutSeconds * 1000) != 1 || ::recv(parent_end_.get(), &byte, 1, 0) != 1)
            return comm_ + " never said it was ready";
        return byte == 0 ? "" : comm_ + " failed to set up, step " + std::to_string(byte);
    }

    // Lets it go and reaps it.
    int release()
    {
        parent_end_.reset();
        return child_->wait();
    }

private:
    // The child: maps, dups, closes every fd it must not hold, reports, waits.
    int hold(int socket) const
    {
        ::prctl(PR_SET_NAME, comm_.c_str());
        std::set<int> keep = {socket};
        char step = 0;
        for (const Hold &hold : plan_) {
            const int fd = hold.buffer->fd.get();
            if (hold.map && ::mmap(nullptr, hold.buffer->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED)
                step = 1;
            if (hold.fds >= 1)
                keep.insert(fd);
            if (hold.fds == 2)
                keep.insert(::dup(fd));
        }
        for (int fd = 3; fd < 4096; ++fd)
            if (!keep.contains(fd))
                ::close(fd);
        if (::send(socket, &step, 1, MSG_NOSIGNAL) != 1)
            return 2;
        char byte;
        while (::recv(socket, &byte, 1, 0) > 0) {
        }
        return 0;
    }

    std::string comm_;
    std::vector<Hold> plan_;
    UniqueFD parent_end_;
    std::optional<harness::ChildProcess> child_;
};

// ---------------------------------------------------------------- fixture

constexpr std::uint64_t kA = 64 * KiB; // ion, shared by three
constexpr std::uint64_t kB = 128 * KiB; // dma-heap system
constexpr std::uint64_t kC = 256 * KiB; // udmabuf, mapped only
constexpr std::uint64_t kE = 32 * KiB; // ion, mapped only
constexpr std::uint64_t kD = 64 * 64 * 4; // vgem's dumb object

class DmabufsView : public IonVmTest
{
protected:
    void SetUp() override
    {
        IonVmTest::SetUp();
        if (HasFatalFailure())
            return;
        const auto expected = expectations_for(kernel_series());
        ASSERT_TRUE(expected) << "no expectations for kernel " << kernel_series();
        has_heap_ = expected->has_dma_heap;
        has_udmabuf_ = expected->has_udmabuf;
        const char *vgem = std::getenv("ION_VM_EXPECT_VGEM");
        if (vgem != nullptr && std::string(vgem) == "1") {
            std::string looked_at;
            card_ = open_vgem_card(looked_at);
            ASSERT_TRUE(card_.is_valid()) << "ION_VM_EXPECT_VGEM=1 but no /dev/dri/card* is vgem's:" << looked_at;
        }

        ASSERT_NO_FATAL_FAILURE(make(a_, from_ion(kA)));
        ASSERT_NO_FATAL_FAILURE(make(e_, from_ion(kE)));
        if (has_heap_) {
            ASSERT_NO_FATAL_FAILURE(make(b_, from_dma_heap(kB)));
        }
        if (has_udmabuf_) {
            ASSERT_NO_FATAL_FAILURE(make(c_, from_udmabuf(kC)));
        }
        if (card_) {
            ASSERT_NO_FATAL_FAILURE(make(d_, from_vgem(card_.get())));
        }

        // A by three (two fds and a mapping; an fd; a mapping), each other
        // buffer by one; E only mapped.
        holders_.emplace_back("dmb-fd-map", plan({{&a_, 2, true}, {&b_, 1, false}}));
        holders_.emplace_back("dmb-fd", plan({{&a_, 1, false}, {&c_, 0, true}}));
        holders_.emplace_back("dmb-map", plan({{&a_, 0, true}, {&d_, 1, false}}));
        holders_.emplace_back("dmb-closed", plan({{&e_, 0, true}}));
        // From here on only the holders (and vgem's handle) hold them.
        for (Made *made : {&a_, &b_, &c_, &d_, &e_})
            made->fd.reset();
        for (const Holder &holder : holders_)
            ASSERT_EQ(holder.ready(), "");
        view_ = dmabufs_json();
    }

    void TearDown() override
    {
        for (Holder &holder : holders_)
            EXPECT_EQ(holder.release(), 0) << holder.comm();
        card_.reset();
    }

    void make(Made &into, std::optional<Made> made)
    {
        ASSERT_TRUE(made) << "could not make a dma-buf: " << to_string(last_errno());
        into = std::move(*made);
        ASSERT_EQ(describe(into), "");
    }

    // The holds whose buffer this kernel has.
    static std::vector<Hold> plan(std::vector<Hold> holds)
    {
        std::erase_if(holds, [](const Hold &hold) { return !hold.buffer->fd.is_valid(); });
        return holds;
    }

    json dmabufs_json()
    {
        const auto result = harness::run_command({harness::ionsvc_ctl_path(), "dmabufs", "--json"});
        EXPECT_EQ(result.exit_code, 0) << result.err;
        json parsed = json::parse(result.out, nullptr, false);
        EXPECT_FALSE(parsed.is_discarded()) << result.out;
        return parsed.is_discarded() ? json() : parsed;
    }

    const json &buffer(std::uint64_t inode) const
    {
        static const json none;
        const json *found = view_.is_object() ? find_by(view_["buffers"], "inode", inode) : nullptr;
        return found != nullptr ? *found : none;
    }

    // The holders of a buffer as "pid:fd_refs/map_refs", ascending pid.
    std::set<std::string> holders_of(std::uint64_t inode) const
    {
        std::set<std::string> found;
        const json &entry = buffer(inode);
        if (entry.is_object())
            for (const json &holder : entry["holders"])
                found.insert(reference(holder["pid"].get<pid_t>(), holder["fd_refs"], holder["map_refs"]));
        return found;
    }

    static std::string reference(pid_t pid, int fds, int maps)
    {
        return std::to_string(pid) + ":" + std::to_string(fds) + "/" + std::to_string(maps);
    }

    ::testing::AssertionResult uses(const Holder &holder, std::uint64_t buffers, std::uint64_t rss,
                                    std::uint64_t pss) const
    {
        const json *entry = view_.is_object() ? find_by(view_["processes"], "pid", holder.pid()) : nullptr;
        if (entry == nullptr)
            return ::testing::AssertionFailure() << holder.comm() << " is not listed:\n" << view_.dump(2);
        if ((*entry)["comm"] != holder.comm() || (*entry)["buffers"] != buffers || (*entry)["rss"] != rss
            || (*entry)["pss"] != pss)
            return ::testing::AssertionFailure() << holder.comm() << ": wanted " << buffers << " buffers, rss "
                                                 << rss << ", pss " << pss << "; got " << entry->dump();
        return ::testing::AssertionSuccess();
    }

    bool has_heap_ = false;
    bool has_udmabuf_ = false;
    UniqueFD card_;
    Made a_, b_, c_, d_, e_;
    std::vector<Holder> holders_;
    json view_;
};

TEST_F(DmabufsView, CountsEachProcessesBuffersRssAndPss)
{
    // A's 64 KiB in thirds; every other buffer has a single holder.
    const std::uint64_t third = kA / 3;
    const std::uint64_t b = has_heap_ ? kB : 0, c = has_udmabuf_ ? kC : 0, d = card_ ? kD : 0;
    EXPECT_TRUE(uses(holders_[0], 1 + (b > 0), kA + b, third + b));
    EXPECT_TRUE(uses(holders_[1], 1 + (c > 0), kA + c, third + c));
    EXPECT_TRUE(uses(holders_[2], 1 + (d > 0), kA + d, third + d));
    EXPECT_TRUE(uses(holders_[3], 1, kE, kE));
    // Sorted by Rss, largest first.
    std::uint64_t previous = UINT64_MAX;
    for (const json &process : view_["processes"]) {
        EXPECT_LE(process["rss"].get<std::uint64_t>(), previous);
        previous = process["rss"];
    }
}

TEST_F(DmabufsView, ListsEachBuffersFdAndMapReferencesPerProcess)
{
    EXPECT_EQ(holders_of(a_.inode),
              (std::set<std::string>{reference(holders_[0].pid(), 2, 1), reference(holders_[1].pid(), 1, 0),
                                     reference(holders_[2].pid(), 0, 1)}));
    // Each as fdinfo sized and named it: exact sizes, the exporter's name.
    for (const Made *made : {&a_, &b_, &c_, &d_, &e_}) {
        if (made->inode == 0)
            continue; // not on this kernel
        SCOPED_TRACE(made->source);
        const json &entry = buffer(made->inode);
        ASSERT_TRUE(entry.is_object()) << "inode " << made->inode << " missing:\n" << view_.dump(2);
        EXPECT_EQ(entry["size"], made->size);
        EXPECT_NE(entry["size_source"], "maps") << "root reads every size exactly";
        EXPECT_EQ(entry["exporter"], made->exporter);
        EXPECT_EQ(entry["kernel_only"], false);
        EXPECT_EQ(entry["ionsvc"], nullptr);
    }
    EXPECT_EQ(a_.size, kA);
    EXPECT_EQ(e_.size, kE);
    if (card_) {
        EXPECT_EQ(d_.size, kD);
        EXPECT_EQ(holders_of(d_.inode), std::set<std::string>{reference(holders_[2].pid(), 1, 0)});
    }
    EXPECT_EQ(view_["ionsvc_matched"], false);
}

TEST_F(DmabufsView, FindsABufferWhoseFdsAreAllClosedThroughItsMapping)
{
    EXPECT_EQ(holders_of(e_.inode), std::set<std::string>{reference(holders_[3].pid(), 0, 1)});
    EXPECT_EQ(buffer(e_.inode)["size"], kE);
}

TEST_F(DmabufsView, SeesTheDmaHeapAndUdmabufBuffersWhereTheKernelHasThem)
{
    if (!has_heap_ && !has_udmabuf_)
        GTEST_SKIP() << "Debian's " << kernel_series()
                     << " kernel has no /dev/dma_heap (CONFIG_DMABUF_HEAPS) and no /dev/udmabuf (CONFIG_UDMABUF)";
    ASSERT_TRUE(has_heap_ && has_udmabuf_) << "a kernel with only one of them: the plan needs both";
    EXPECT_EQ(b_.size, kB);
    EXPECT_EQ(c_.size, kC);
    EXPECT_EQ(holders_of(b_.inode), std::set<std::string>{reference(holders_[0].pid(), 1, 0)});
    EXPECT_EQ(holders_of(c_.inode), std::set<std::string>{reference(holders_[1].pid(), 0, 1)});
    EXPECT_EQ(buffer(c_.inode)["exporter"], "udmabuf");
}

TEST_F(DmabufsView, ShowsAVgemBufferOnlyItsGemHandleHoldsAsKernelOnly)
{
    if (!card_)
        GTEST_SKIP() << "vgem is not loaded in this VM";
    ASSERT_EQ(view_["bufinfo_read"], true) << "root reads /sys/kernel/debug/dma_buf/bufinfo";
    Made orphan;
    ASSERT_NO_FATAL_FAILURE(make(orphan, from_vgem(card_.get())));
    orphan.fd.reset();
    view_ = dmabufs_json();
    const json &entry = buffer(orphan.inode);
    ASSERT_TRUE(entry.is_object()) << view_.dump(2);
    EXPECT_EQ(entry["kernel_only"], true);
    EXPECT_EQ(entry["holders"], json::array());
    EXPECT_EQ(entry["size"], orphan.size);
    EXPECT_EQ(entry["exporter"], orphan.exporter);
    EXPECT_GE(view_["totals"]["kernel_only_buffers"].get<int>(), 1);
}

} // namespace
} // namespace ionsvc::vmtest
