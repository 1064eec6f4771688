// SPDX-License-Identifier: MIT
// Reads every dma-buf of the machine out of /proc, the way Android's
// dmabuf_dump does, into the model of dmabufs_model.h. The only I/O of
// `ionsvc-ctl dmabufs`; the paths are parameters so that unit tests can
// point the scan at a tree of their own.
//
// For every numeric directory of the proc root (a process):
//   comm              the process's name (a process whose comm cannot be
//                     read has vanished and is skipped)
//   fd/<n>, fdinfo/<n> an fd whose link is a dma-buf's ("/dmabuf:...")
//                     and whose fdinfo has exp_name: one fd reference to
//                     the buffer of fdinfo's ino, with its size, exporter
//                     and name
//   maps              a line whose path starts with "/dmabuf:" and whose
//                     device is a dma-buf's (that of a buffer also seen
//                     through an fd; failing any, an anonymous one): one
//                     map reference to the buffer of its inode
// Then the buffers seen only in maps get their size from bufinfo, else from
// stat of /proc/<pid>/map_files/<range> (root only), else the furthest
// mapped byte stands as a lower bound. Buffers of bufinfo that no process
// references are added as kernel-only.
//
// What cannot be read (a process that ends mid-scan, another user's fds)
// is skipped without a word: the scan shows what this user may see.
#pragma once

#include <string>

#include <ionsvc/expected.h>

#include "dmabufs_model.h"

namespace ionsvc::ctl {

inline constexpr const char *kDefaultProcRoot = "/proc";
inline constexpr const char *kDefaultBufinfoPath = "/sys/kernel/debug/dma_buf/bufinfo";

struct DmabufScanOptions
{
    std::string proc_root = kDefaultProcRoot;
    // Unreadable (no debugfs, not root): no kernel-only buffers.
    std::string bufinfo_path = kDefaultBufinfoPath;
};

// The error, when the proc root cannot be listed at all, names it and why.
Expected<DmabufScan, std::string> scan_dmabufs(const DmabufScanOptions &options = {});

} // namespace ionsvc::ctl
