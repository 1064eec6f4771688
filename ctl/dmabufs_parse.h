// SPDX-License-Identifier: MIT
// The kernel's dma-buf texts, parsed: pure functions over the bytes that
// dmabufs_scan.cpp reads, so that each format is unit-tested on its own.
// The formats are those of Linux 6.1 and 6.12 (drivers/dma-buf/dma-buf.c,
// fs/proc/fd.c, fs/proc/task_mmu.c).
//
// A dma-buf's name is chosen by any process that holds it (DMA_BUF_SET_NAME,
// at most 31 bytes, any bytes but NUL), so a name may contain newlines and
// tabs that imitate other lines. Each parser reads the kernel's own fields
// where a name cannot reach them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ionsvc::ctl {

// What the kernel says of one dma-buf, in fdinfo or in bufinfo.
struct DmabufRecord
{
    std::uint64_t inode = 0;
    std::uint64_t size = 0;
    std::string exporter; // exp_name
    std::string name;     // "" when unset
};

// /proc/<pid>/fdinfo/<fd> of a dma-buf: the generic "ino:" line, then
// dma_buf_show_fdinfo's "size:", "count:", "exp_name:" and, when set,
// "name:", which the kernel prints last.
// nullopt unless the text has ino, size and exp_name: the fd is then no
// dma-buf (or a kernel that prints something else).
std::optional<DmabufRecord> parse_dmabuf_fdinfo(std::string_view text);

// Whether readlink(/proc/<pid>/fd/<n>) names a dma-buf: "/dmabuf:<name>"
// since dmabuffs (5.3), "anon_inode:dmabuf" before. A file on disk may be
// called "/dmabuf:x" too, so the scan also wants the fdinfo above.
bool is_dmabuf_link(std::string_view target);

// One line of /proc/<pid>/maps whose path is "/dmabuf:<name>" (the kernel
// escapes a newline in it as "\012", so a line is a line).
struct MapsDmabuf
{
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::uint64_t offset = 0; // into the buffer, in bytes
    std::string device;       // "major:minor", hex, as maps prints it
    std::uint64_t inode = 0;
    std::string name;
};
std::optional<MapsDmabuf> parse_dmabuf_maps_line(std::string_view line);
// Whether a maps device ("00:0f") is an anonymous one (major 0), as every
// pseudo file system's is, dmabuffs included.
bool is_anonymous_device(std::string_view device);

// The buffers of /sys/kernel/debug/dma_buf/bufinfo (dma_buf_debug_show):
// a line "size\tflags\tmode\tcount\texp_name\tino\tname" each, with the
// numbers zero-padded to 8 digits (which a 31-byte name cannot imitate)
// and name "<none>" when unset, then tab-indented fence and attachment
// lines.
std::vector<DmabufRecord> parse_bufinfo(std::string_view text);

} // namespace ionsvc::ctl
