// SPDX-License-Identifier: MIT
// `ionsvc-ctl dmabufs`: the scan of dmabufs_scan.h as text, CSV or JSON.
// Pure functions, unit-tested against golden text. Every text that came
// from /proc (comm, exporter, name) and from the daemon (heap, owner comm)
// is made printable (ionsvc/text.h) first.
//
// Text (the default):
//   1. A table per process, sorted by Rss descending: PID COMM BUFFERS RSS
//      PSS (sizes for humans), then a `total` row (buffers held by any
//      process, their sizes each once, the Pss summed).
//   2. A table per buffer, ascending inode: INODE SIZE EXPORTER NAME PROCS
//      FD_REFS MAP_REFS IONSVC HEAP OWNER. PROCS is the number of
//      processes referencing it ("kernel" for a kernel-only buffer);
//      FD_REFS and MAP_REFS sum its fds and mappings over them. IONSVC,
//      HEAP and OWNER ("<comm> (pid P, uid U)") are the daemon's record of
//      the buffer; "-" for one ionsvcd did not hand out. A size that is
//      only a lower bound (seen in maps alone) reads ">=<size>".
//   3. With --all, the grid of dmabuf_dump -a: a row per buffer (INODE
//      SIZE EXPORTER NAME), a column per process headed "<comm>[<pid>]",
//      each cell "<fd refs>/<map refs>" or "-" when it holds none.
//   Then one line each, when they apply: that the daemon was not reachable
//   (no IONSVC marks), that bufinfo was not readable (no kernel-only
//   buffers), and the kernel-only totals.
//
// CSV (--csv; --all changes nothing, the rows are already complete), RFC
// 4180, with a header line. One row per buffer and process that
// references it, processes in the order of the text's first table, their
// buffers by inode; then one row per kernel-only buffer with pid, comm,
// fd_refs, map_refs and pss_share empty:
//   pid,comm,inode,size,size_source,exporter,name,fd_refs,map_refs,
//   processes,pss_share,ionsvc_id,ionsvc_heap,owner_pid,owner_comm,owner_uid
//   pss_share is size / processes, rounded down: a process's Pss is the sum
//   of its pss_share, its Rss the sum of its size. The ionsvc fields are
//   empty for a buffer the daemon did not hand out (or with no daemon).
//
// JSON (--json; always complete):
//   { "processes": [ { "pid", "comm", "buffers", "rss", "pss" } ],  // by Rss
//     "buffers": [ { "inode", "size", "size_source", "exporter", "name",
//                    "kernel_only",
//                    "holders": [ { "pid", "fd_refs", "map_refs" } ],
//                    "ionsvc": null | { "id", "heap", "pid", "comm", "uid" } } ],
//     "totals": { "buffers", "bytes", "pss", "kernel_only_buffers",
//                 "kernel_only_bytes" },
//     "ionsvc_matched": bool,   // whether the daemon's list was at hand
//     "bufinfo_read": bool }    // whether kernel-only buffers were looked for
//   Sizes are exact bytes; size_source is "fdinfo", "bufinfo", "map_files"
//   (exact) or "maps" (a lower bound).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dmabufs_model.h"

namespace ionsvc::ctl {

enum class DmabufFormat { kText, kCsv, kJson };

// The daemon's buffers, or nullopt when it could not be asked.
using IonsvcBuffers = std::optional<std::vector<IonsvcBuffer>>;

// The view main.cpp prints: the scan, marked with the daemon's buffers.
std::string render_dmabufs(const DmabufScan &scan, const IonsvcBuffers &ionsvc, DmabufFormat format,
                           bool all);

std::string render_dmabufs_text(const DmabufScan &scan, const IonsvcBuffers &ionsvc, bool all);
std::string render_dmabufs_csv(const DmabufScan &scan, const IonsvcBuffers &ionsvc);
nlohmann::json dmabufs_to_json(const DmabufScan &scan, const IonsvcBuffers &ionsvc);

// The scan's and the daemon's texts made printable: done once by
// render_dmabufs before any format.
void make_printable(DmabufScan &scan);
void make_printable(std::vector<IonsvcBuffer> &ionsvc);

} // namespace ionsvc::ctl
