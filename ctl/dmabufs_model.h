// SPDX-License-Identifier: MIT
// The model of `ionsvc-ctl dmabufs`: every dma-buf of the machine, who
// references it and how, as dmabufs_scan.h reads it from /proc. Pure data
// and pure sums: no I/O here, so the figures are unit-tested on their own.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ionsvc::ctl {

// One buffer as ionsvcd accounts it, matched to the scan by inode. The
// daemon's list is asked for by ionsvc-ctl (not by the scan), so the view
// can be shown without it.
struct IonsvcBuffer
{
    std::uint64_t inode = 0;
    std::uint64_t id = 0;   // ionsvc's buffer id
    std::string heap;       // the heap it came from, e.g. "ion:ion_system_heap"
    std::uint32_t pid = 0;  // the client that holds it (its owner)
    std::string comm;
    std::uint32_t uid = 0;
};

// How sure a buffer's size is.
enum class SizeSource {
    kFdinfo,   // `size:` of an fd's fdinfo: exact
    kBufinfo,  // /sys/kernel/debug/dma_buf/bufinfo: exact
    kMapFiles, // st_size of /proc/<pid>/map_files/<range>: exact
    kMaps,     // the furthest mapped byte: a lower bound (no fd, no root)
};
const char *size_source_name(SizeSource source);

// What one process holds of one buffer.
struct DmabufHolder
{
    std::uint32_t pid = 0;
    std::uint32_t fd_refs = 0;  // fds in /proc/<pid>/fd that are the buffer
    std::uint32_t map_refs = 0; // lines of /proc/<pid>/maps that map it
};

struct Dmabuf
{
    std::uint64_t inode = 0; // the key: one dma-buf, one inode of dmabuffs
    std::uint64_t size = 0;
    SizeSource size_source = SizeSource::kMaps;
    std::string exporter; // exp_name; "" when only a mapping was seen
    std::string name;     // DMA_BUF_SET_NAME's; "" when unset or unknown
    std::vector<DmabufHolder> holders; // ascending pid; empty if kernel-only
    // Listed in bufinfo but found in no process: held by the kernel
    // (an importer, a GEM handle, an fd in flight) or by processes this
    // user may not read.
    bool kernel_only = false;
};

struct DmabufProcess
{
    std::uint32_t pid = 0;
    std::string comm;
};

// One scan of the machine. Text from /proc is raw here: the renderers make
// it printable.
struct DmabufScan
{
    std::vector<DmabufProcess> processes; // those holding a dma-buf, ascending pid
    std::vector<Dmabuf> buffers;          // ascending inode
    bool bufinfo_read = false;            // kernel-only buffers could be looked for
};

// A process's share of the dma-bufs (dmabuf_dump's per-process summary).
struct DmabufUsage
{
    std::uint32_t pid = 0;
    std::string comm;
    std::uint64_t buffers = 0;
    std::uint64_t rss = 0; // the size of every buffer it references, each once
    std::uint64_t pss = 0; // each buffer's size / processes referencing it (rounded down)
};

// Sorted by Rss descending, then pid ascending.
std::vector<DmabufUsage> usage_by_process(const DmabufScan &scan);

struct DmabufTotals
{
    std::uint64_t buffers = 0; // held by a process
    std::uint64_t bytes = 0;   // their sizes, each buffer once
    std::uint64_t pss = 0;     // the processes' Pss summed (<= bytes by rounding)
    std::uint64_t kernel_only_buffers = 0;
    std::uint64_t kernel_only_bytes = 0;
};
DmabufTotals totals_of(const DmabufScan &scan);

// The daemon's records by inode, to mark the scan's buffers in one pass.
using IonsvcIndex = std::unordered_map<std::uint64_t, const IonsvcBuffer *>;
IonsvcIndex index_by_inode(const std::vector<IonsvcBuffer> &ionsvc);

} // namespace ionsvc::ctl
