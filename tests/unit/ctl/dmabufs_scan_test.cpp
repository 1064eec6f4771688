// SPDX-License-Identifier: MIT
// `ionsvc-ctl dmabufs`: the kernel's texts parsed, and the scan of a proc
// tree built here file by file (fd links, fdinfo, maps, map_files), in the
// formats of Linux 6.1 and 6.12.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "dmabufs_parse.h"
#include "dmabufs_scan.h"

namespace ionsvc::ctl {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::Pointee;

auto Sized(std::uint64_t size, SizeSource source)
{
    return AllOf(Field(&Dmabuf::size, size), Field(&Dmabuf::size_source, source));
}

auto Holds(std::uint32_t pid, std::uint32_t fd_refs, std::uint32_t map_refs)
{
    return AllOf(Field(&DmabufHolder::pid, pid), Field(&DmabufHolder::fd_refs, fd_refs),
                 Field(&DmabufHolder::map_refs, map_refs));
}

// ---------------------------------------------------------------- parsers

// As fs/proc/fd.c and dma_buf_show_fdinfo print it.
std::string fdinfo_text(std::uint64_t inode, std::uint64_t size, const std::string &exporter,
                        const std::string &name = "")
{
    std::string text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t" + std::to_string(inode) + "\nsize:\t"
                     + std::to_string(size) + "\ncount:\t2\nexp_name:\t" + exporter + "\n";
    if (!name.empty())
        text += "name:\t" + name + "\n";
    return text;
}

TEST(DmabufFdinfo, GivesTheInodeSizeExporterAndName)
{
    const auto parsed = parse_dmabuf_fdinfo(fdinfo_text(4242, 1048576, "ion", "camera:812"));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->inode, 4242u);
    EXPECT_EQ(parsed->size, 1048576u);
    EXPECT_EQ(parsed->exporter, "ion");
    EXPECT_EQ(parsed->name, "camera:812");
}

TEST(DmabufFdinfo, IsNothingForAFileWithoutExpName)
{
    EXPECT_FALSE(parse_dmabuf_fdinfo("pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t77\n"));
}

TEST(DmabufFdinfo, KeepsANameWithNewlinesWhole)
{
    // A name imitating a size line comes after the kernel's own lines.
    const auto parsed = parse_dmabuf_fdinfo(fdinfo_text(9, 4096, "system", "x\nsize:\t1\nname:\ty"));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->size, 4096u);
    EXPECT_EQ(parsed->name, "x\nsize:\t1\nname:\ty");
}

TEST(DmabufMaps, ReadsADmabufMappingLine)
{
    const auto parsed =
        parse_dmabuf_maps_line("7f12a0000000-7f12a0003000 rw-s 00001000 00:0f 4242                       /dmabuf:pre view");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->start, 0x7f12a0000000u);
    EXPECT_EQ(parsed->end, 0x7f12a0003000u);
    EXPECT_EQ(parsed->offset, 0x1000u);
    EXPECT_EQ(parsed->device, "00:0f");
    EXPECT_EQ(parsed->inode, 4242u);
    EXPECT_EQ(parsed->name, "pre view");
    EXPECT_TRUE(is_anonymous_device(parsed->device));
    EXPECT_FALSE(is_anonymous_device("08:01"));
}

TEST(DmabufMaps, SkipsLinesOfOtherFiles)
{
    EXPECT_FALSE(parse_dmabuf_maps_line("55d0c0a00000-55d0c0a22000 r--p 00000000 08:01 131 /usr/bin/cat"));
    EXPECT_FALSE(parse_dmabuf_maps_line("7ffc1a1e0000-7ffc1a201000 rw-p 00000000 00:00 0        [stack]"));
    EXPECT_FALSE(parse_dmabuf_maps_line("7f00-7f10 rw-s 00000000 00:0f 0 /dmabuf:"));
}

// dma_buf_debug_show on 6.1 and 6.12, with a fence line and an attachment.
constexpr const char *kBufinfo = "\nDma-buf Objects:\n"
                                 "size    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n"
                                 "00008192\t00000002\t00080007\t00000003\tsystem\t00000011\tpreview\n"
                                 "\tshared fence: dma_fence_array 1:1 signalled\n"
                                 "\tAttached Devices:\n"
                                 "\t0000:00:02.0\n"
                                 "Total 1 devices attached\n\n"
                                 "01048576\t00000002\t00080007\t00000001\tion\t00000099\t<none>\n"
                                 "\tAttached Devices:\n"
                                 "Total 0 devices attached\n\n"
                                 // A name with a newline that imitates a short record.
                                 "00004096\t00000002\t00080007\t00000001\tdrm\t00000123\tx\n"
                                 "1\t2\t3\t4\tfake\t5\tname\n"
                                 "\tAttached Devices:\n"
                                 "Total 0 devices attached\n\n"
                                 "\nTotal 3 objects, 1060864 bytes\n";

TEST(DmabufBufinfo, ReadsEveryRecordAndNoneOfANamesImitation)
{
    const auto entries = parse_bufinfo(kBufinfo);
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[0].inode, 11u);
    EXPECT_EQ(entries[0].size, 8192u);
    EXPECT_EQ(entries[0].exporter, "system");
    EXPECT_EQ(entries[0].name, "preview");
    EXPECT_EQ(entries[1].inode, 99u);
    EXPECT_EQ(entries[1].name, "") << "<none> is no name";
    EXPECT_EQ(entries[2].inode, 123u);
    EXPECT_EQ(entries[2].name, "x");
}

// ---------------------------------------------------------------- the scan

// A proc tree of its own under the test's temporary directory.
class ProcTree
{
public:
    ProcTree()
    {
        std::string pattern = ::testing::TempDir() + "/dmabufs-proc-XXXXXX";
        root_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "";
    }
    ~ProcTree()
    {
        std::error_code ignored;
        fs::remove_all(root_, ignored);
    }
    ProcTree(const ProcTree &) = delete;
    ProcTree &operator=(const ProcTree &) = delete;

    const std::string &root() const { return root_; }

    void file(const std::string &path, const std::string &text) const
    {
        fs::create_directories(fs::path(root_ + "/" + path).parent_path());
        std::ofstream(root_ + "/" + path) << text;
    }
    void link(const std::string &path, const std::string &target) const
    {
        fs::create_directories(fs::path(root_ + "/" + path).parent_path());
        fs::create_symlink(target, root_ + "/" + path);
    }
    void directory(const std::string &path) const { fs::create_directories(root_ + "/" + path); }

    // A process with an fd to a dma-buf.
    void dmabuf_fd(int pid, int fd, std::uint64_t inode, std::uint64_t size, const std::string &exporter,
                   const std::string &name) const
    {
        const std::string base = std::to_string(pid);
        link(base + "/fd/" + std::to_string(fd), "/dmabuf:" + name);
        file(base + "/fdinfo/" + std::to_string(fd), fdinfo_text(inode, size, exporter, name));
    }

private:
    std::string root_;
};

std::string maps_line(const std::string &range, const std::string &device, std::uint64_t inode,
                      const std::string &path, const std::string &offset = "00000000")
{
    return range + " rw-s " + offset + " " + device + " " + std::to_string(inode) + "                 " + path
         + "\n";
}

// Four processes, one of them gone mid-scan, one with an unreadable fdinfo:
//   11 (8 KiB)  pid 100 by fd and mapped
//   12 (64 KiB) pid 100 mapped only (its fds closed); map_files sizes it
//   13 (12 KiB) pid 100 and 200 by fd, pid 300 mapped: shared by three
//   14          pid 200 mapped only, no map_files: 8 KiB seen, a lower bound
class DmabufScanOfATree : public ::testing::Test
{
protected:
    void SetUp() override
    {
        ASSERT_FALSE(tree_.root().empty());
        tree_.file("100/comm", "camera\n");
        tree_.dmabuf_fd(100, 3, 11, 8192, "system", "preview");
        tree_.dmabuf_fd(100, 4, 13, 12288, "ion", "shared");
        tree_.link("100/fd/0", "/dev/null");
        tree_.file("100/fdinfo/0", "pos:\t0\nflags:\t02\nmnt_id:\t5\nino:\t5\n");
        tree_.file("100/maps", maps_line("55d0c0a00000-55d0c0a22000", "08:01", 131, "/usr/bin/camera")
                                   + maps_line("7f0000000000-7f0000002000", "00:0f", 11, "/dmabuf:preview")
                                   + maps_line("7f0000010000-7f0000020000", "00:0f", 12, "/dmabuf:closed"));
        tree_.file("100/map_files/7f0000010000-7f0000020000", std::string(65536, 'x'));

        tree_.file("200/comm", "surfaceflinger\n");
        tree_.dmabuf_fd(200, 7, 13, 12288, "ion", "shared");
        // A file on disk named like a dma-buf: no exp_name, not counted.
        tree_.link("200/fd/8", "/dmabuf:fake");
        tree_.file("200/fdinfo/8", "pos:\t0\nflags:\t02\nmnt_id:\t25\nino:\t15\n");
        // An fd whose fdinfo cannot be read: skipped without a word.
        tree_.link("200/fd/9", "/dmabuf:unreadable");
        tree_.link("200/fdinfo/9", "/nonexistent");
        tree_.file("200/maps", maps_line("7f0000030000-7f0000031000", "00:0f", 14, "/dmabuf:only-mapped",
                                         "00001000")
                                   + maps_line("7f0000040000-7f0000041000", "08:01", 15, "/dmabuf:fake"));

        tree_.file("300/comm", "composer\n");
        tree_.directory("300/fd");
        tree_.file("300/maps", maps_line("7f0000050000-7f0000053000", "00:0f", 13, "/dmabuf:shared"));

        // Gone between the listing of the root and the reading of its comm:
        // what is left of it must not count.
        tree_.dmabuf_fd(400, 3, 16, 4096, "system", "gone");
        // Maps that cannot be read (a directory), fds another user's.
        tree_.file("500/comm", "private\n");
        tree_.directory("500/maps");
        tree_.directory("self");
    }

    DmabufScan scan(const std::string &bufinfo = "/nonexistent/bufinfo")
    {
        auto result = scan_dmabufs({tree_.root(), bufinfo});
        EXPECT_TRUE(result) << (result ? "" : result.error());
        return result ? *result : DmabufScan{};
    }

    const Dmabuf *buffer(const DmabufScan &scan, std::uint64_t inode)
    {
        for (const Dmabuf &buffer : scan.buffers)
            if (buffer.inode == inode)
                return &buffer;
        return nullptr;
    }

    ProcTree tree_;
};

TEST_F(DmabufScanOfATree, FindsEveryBufferByFdOrMapping)
{
    const DmabufScan result = scan();
    EXPECT_THAT(result.buffers, ElementsAre(Field(&Dmabuf::inode, 11u), Field(&Dmabuf::inode, 12u),
                                            Field(&Dmabuf::inode, 13u), Field(&Dmabuf::inode, 14u)));
    EXPECT_THAT(result.processes, ElementsAre(Field(&DmabufProcess::comm, "camera"),
                                              Field(&DmabufProcess::comm, "surfaceflinger"),
                                              Field(&DmabufProcess::comm, "composer")));
    EXPECT_FALSE(result.bufinfo_read);
}

TEST_F(DmabufScanOfATree, CountsABufferHeldByFdAndMappedAsBoth)
{
    const DmabufScan result = scan();
    EXPECT_THAT(buffer(result, 11),
                Pointee(AllOf(Sized(8192, SizeSource::kFdinfo), Field(&Dmabuf::exporter, "system"),
                              Field(&Dmabuf::holders, ElementsAre(Holds(100, 1, 1))))));
}

TEST_F(DmabufScanOfATree, SizesAMappedOnlyBufferThroughMapFilesElseAsALowerBound)
{
    const DmabufScan result = scan();
    EXPECT_THAT(buffer(result, 12), Pointee(AllOf(Sized(65536, SizeSource::kMapFiles), Field(&Dmabuf::name, "closed"),
                                                  Field(&Dmabuf::exporter, ""))));
    // Offset 0x1000 and 4 KiB mapped: at least 8 KiB.
    EXPECT_THAT(buffer(result, 14), Pointee(Sized(8192, SizeSource::kMaps)));
}

TEST_F(DmabufScanOfATree, SharesABufferOfThreeProcessesInThirdsOfPss)
{
    const DmabufScan result = scan();
    EXPECT_THAT(buffer(result, 13), Pointee(Field(&Dmabuf::holders, ElementsAre(Holds(100, 1, 0), Holds(200, 1, 0),
                                                                                 Holds(300, 0, 1)))));

    const auto usages = usage_by_process(result);
    ASSERT_EQ(usages.size(), 3u);
    // camera: 8 KiB + 64 KiB alone, 12 KiB / 3.
    EXPECT_EQ(usages[0].pid, 100u);
    EXPECT_EQ(usages[0].buffers, 3u);
    EXPECT_EQ(usages[0].rss, 8192u + 65536u + 12288u);
    EXPECT_EQ(usages[0].pss, 8192u + 65536u + 4096u);
    // surfaceflinger: 12 KiB / 3 and the 8 KiB it alone maps.
    EXPECT_EQ(usages[1].pid, 200u);
    EXPECT_EQ(usages[1].rss, 12288u + 8192u);
    EXPECT_EQ(usages[1].pss, 4096u + 8192u);
    EXPECT_EQ(usages[2].pid, 300u);
    EXPECT_EQ(usages[2].rss, 12288u);
    EXPECT_EQ(usages[2].pss, 4096u);
}

TEST_F(DmabufScanOfATree, AddsTheBuffersOfBufinfoThatNoProcessHolds)
{
    tree_.file("bufinfo", kBufinfo);
    const DmabufScan result = scan(tree_.root() + "/bufinfo");
    EXPECT_TRUE(result.bufinfo_read);
    EXPECT_THAT(buffer(result, 99),
                Pointee(AllOf(Field(&Dmabuf::kernel_only, true), Field(&Dmabuf::holders, IsEmpty()),
                              Sized(1048576, SizeSource::kBufinfo), Field(&Dmabuf::exporter, "ion"))));
    // A buffer processes hold is not kernel-only, and fdinfo's word stands.
    EXPECT_THAT(buffer(result, 11),
                Pointee(AllOf(Field(&Dmabuf::kernel_only, false), Sized(8192, SizeSource::kFdinfo))));

    const DmabufTotals totals = totals_of(result);
    EXPECT_EQ(totals.kernel_only_buffers, 2u) << "99 and 123";
    EXPECT_EQ(totals.kernel_only_bytes, 1048576u + 4096u);
}

TEST_F(DmabufScanOfATree, FailsOnlyWhenTheProcRootCannotBeRead)
{
    const auto result = scan_dmabufs({tree_.root() + "/nonexistent", "/nonexistent/bufinfo"});
    ASSERT_FALSE(result);
    EXPECT_THAT(result.error(), ::testing::HasSubstr("No such file or directory"));
}

} // namespace
} // namespace ionsvc::ctl
