// SPDX-License-Identifier: MIT
// `ionsvc-ctl dmabufs` against golden text, CSV and JSON written out by
// hand from a model built here: two processes, a buffer they share (that
// ionsvcd handed out), one mapped only, one that only the kernel holds.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "dmabufs_render.h"

namespace ionsvc::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

//   11  8 KiB   camera by fd and mapped
//   13  12 KiB  camera and sf by fd; ionsvc's buffer 7
//   14  16 KiB  sf mapped only (a lower bound)
//   99  1 MiB   no process
// The camera's comm carries an escape sequence, a name a comma.
DmabufScan sample_scan()
{
    DmabufScan scan;
    scan.processes = {{100, "camera\x1b[2J"}, {200, "sf"}};
    scan.buffers = {
        {11, 8192, SizeSource::kFdinfo, "system", "preview,left", {{100, 1, 1}}, false},
        {13, 12288, SizeSource::kFdinfo, "ion", "", {{100, 1, 0}, {200, 1, 0}}, false},
        {14, 16384, SizeSource::kMaps, "", "only-mapped", {{200, 0, 1}}, false},
        {99, 1048576, SizeSource::kBufinfo, "ion", "", {}, true},
    };
    scan.bufinfo_read = true;
    return scan;
}

IonsvcBuffers sample_ionsvc() { return std::vector<IonsvcBuffer>{{13, 7, "ion:ion_system_heap", 100, "camera", 1000}}; }

std::string text_of(const IonsvcBuffers &ionsvc, bool all = false)
{
    return render_dmabufs(sample_scan(), ionsvc, DmabufFormat::kText, all);
}

TEST(DmabufsText, ShowsProcessesByRssThenBuffersMarkedWithTheirIonsvcOwner)
{
    // sf: 12 KiB / 2 + 16 KiB; camera: 8 KiB + 12 KiB / 2. The comm's
    // escape is written out; buffers ionsvcd did not hand out read "-".
    const std::string expected = R"(  PID  COMM           BUFFERS      RSS      PSS
  200  sf                   2  28.0KiB  22.0KiB
  100  camera\x1b[2J        2  20.0KiB  14.0KiB
total                       3  36.0KiB  36.0KiB

INODE       SIZE  EXPORTER  NAME           PROCS  FD_REFS  MAP_REFS  IONSVC  HEAP                 OWNER
   11     8.0KiB  system    preview,left       1        1         1       -  -                    -
   13    12.0KiB  ion       -                  2        2         0       7  ion:ion_system_heap  camera (pid 100, uid 1000)
   14  >=16.0KiB  -         only-mapped        1        0         1       -  -                    -
   99     1.0MiB  ion       -             kernel        0         0       -  -                    -

kernel-only buffers (held by no process shown): 1, 1.0MiB
)";
    EXPECT_EQ(text_of(sample_ionsvc()), expected);
}

TEST(DmabufsText, WithAllAddsAGridOfFdAndMapReferencesPerProcess)
{
    const std::string grid = R"(
references per process (fd refs/map refs):
INODE       SIZE  EXPORTER  NAME          camera\x1b[2J[100]  sf[200]
   11     8.0KiB  system    preview,left                 1/1        -
   13    12.0KiB  ion       -                            1/0      1/0
   14  >=16.0KiB  -         only-mapped                    -      0/1
   99     1.0MiB  ion       -                              -        -
)";
    EXPECT_THAT(text_of(sample_ionsvc(), true), HasSubstr(grid));
    EXPECT_THAT(text_of(sample_ionsvc(), false), Not(HasSubstr("references per process")));
}

TEST(DmabufsText, SaysOnceThatBuffersCouldNotBeMatchedWithoutTheDaemon)
{
    const std::string text = text_of(std::nullopt);
    const std::string note = "buffers could not be matched to ionsvc: the daemon was not reachable\n";
    ASSERT_THAT(text, HasSubstr(note));
    EXPECT_EQ(text.find(note), text.rfind(note));
    EXPECT_THAT(text, HasSubstr("   13    12.0KiB  ion       -                  2        2         0       -  -     -\n"));
    // With the daemon's list at hand, there is nothing to say.
    EXPECT_THAT(text_of(sample_ionsvc()), Not(HasSubstr("not reachable")));
}

TEST(DmabufsText, SaysWhenKernelOnlyBuffersCouldNotBeLookedFor)
{
    DmabufScan scan = sample_scan();
    scan.bufinfo_read = false;
    EXPECT_THAT(render_dmabufs(scan, sample_ionsvc(), DmabufFormat::kText, false),
                HasSubstr("kernel-only buffers not shown: /sys/kernel/debug/dma_buf/bufinfo is not readable\n"));
    EXPECT_THAT(text_of(sample_ionsvc()), Not(HasSubstr("not readable")));
}

TEST(DmabufsCsv, HasARowPerProcessAndBufferThenOnePerKernelOnlyBuffer)
{
    // Processes by Rss, their buffers by inode; the name with a comma quoted.
    const std::string expected =
        "pid,comm,inode,size,size_source,exporter,name,fd_refs,map_refs,processes,pss_share,"
        "ionsvc_id,ionsvc_heap,owner_pid,owner_comm,owner_uid\n"
        "200,sf,13,12288,fdinfo,ion,,1,0,2,6144,7,ion:ion_system_heap,100,camera,1000\n"
        "200,sf,14,16384,maps,,only-mapped,0,1,1,16384,,,,,\n"
        "100,camera\\x1b[2J,11,8192,fdinfo,system,\"preview,left\",1,1,1,8192,,,,,\n"
        "100,camera\\x1b[2J,13,12288,fdinfo,ion,,1,0,2,6144,7,ion:ion_system_heap,100,camera,1000\n"
        ",,99,1048576,bufinfo,ion,,,,0,,,,,,\n";
    EXPECT_EQ(render_dmabufs(sample_scan(), sample_ionsvc(), DmabufFormat::kCsv, false), expected);
}

TEST(DmabufsJson, HasEveryProcessBufferHolderAndTotal)
{
    const nlohmann::json expected = nlohmann::json::parse(R"({
      "processes": [
        { "pid": 200, "comm": "sf", "buffers": 2, "rss": 28672, "pss": 22528 },
        { "pid": 100, "comm": "camera\\x1b[2J", "buffers": 2, "rss": 20480, "pss": 14336 }
      ],
      "buffers": [
        { "inode": 11, "size": 8192, "size_source": "fdinfo", "exporter": "system", "name": "preview,left",
          "kernel_only": false, "holders": [ { "pid": 100, "fd_refs": 1, "map_refs": 1 } ], "ionsvc": null },
        { "inode": 13, "size": 12288, "size_source": "fdinfo", "exporter": "ion", "name": "",
          "kernel_only": false,
          "holders": [ { "pid": 100, "fd_refs": 1, "map_refs": 0 }, { "pid": 200, "fd_refs": 1, "map_refs": 0 } ],
          "ionsvc": { "id": 7, "heap": "ion:ion_system_heap", "pid": 100, "comm": "camera", "uid": 1000 } },
        { "inode": 14, "size": 16384, "size_source": "maps", "exporter": "", "name": "only-mapped",
          "kernel_only": false, "holders": [ { "pid": 200, "fd_refs": 0, "map_refs": 1 } ], "ionsvc": null },
        { "inode": 99, "size": 1048576, "size_source": "bufinfo", "exporter": "ion", "name": "",
          "kernel_only": true, "holders": [], "ionsvc": null }
      ],
      "totals": { "buffers": 3, "bytes": 36864, "pss": 36864, "kernel_only_buffers": 1,
                  "kernel_only_bytes": 1048576 },
      "ionsvc_matched": true,
      "bufinfo_read": true
    })");
    const std::string text = render_dmabufs(sample_scan(), sample_ionsvc(), DmabufFormat::kJson, false);
    EXPECT_EQ(nlohmann::json::parse(text), expected) << text;
    EXPECT_FALSE(nlohmann::json::parse(render_dmabufs(sample_scan(), std::nullopt, DmabufFormat::kJson,
                                                      false))["ionsvc_matched"]);
}

TEST(DmabufsJson, StaysValidUtf8WhateverBytesAProcessChose)
{
    DmabufScan scan = sample_scan();
    scan.processes[1].comm = "bad\xff\xfe";
    scan.buffers[0].name = "\xc3";
    const std::string text = render_dmabufs(scan, std::nullopt, DmabufFormat::kJson, false);
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << text;
    EXPECT_EQ(json["processes"][0]["comm"], "bad\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(json["buffers"][0]["name"], "\xEF\xBF\xBD");
}

} // namespace
} // namespace ionsvc::ctl
