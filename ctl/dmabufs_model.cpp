// SPDX-License-Identifier: MIT
#include "dmabufs_model.h"

#include <algorithm>
#include <map>
#include <utility>

namespace ionsvc::ctl {

const char *size_source_name(SizeSource source)
{
    switch (source) {
    case SizeSource::kFdinfo: return "fdinfo";
    case SizeSource::kBufinfo: return "bufinfo";
    case SizeSource::kMapFiles: return "map_files";
    case SizeSource::kMaps: return "maps";
    }
    return "maps";
}

std::vector<DmabufUsage> usage_by_process(const DmabufScan &scan)
{
    std::map<std::uint32_t, DmabufUsage> by_pid;
    for (const DmabufProcess &process : scan.processes)
        by_pid[process.pid] = {process.pid, process.comm, 0, 0, 0};
    for (const Dmabuf &buffer : scan.buffers) {
        for (const DmabufHolder &holder : buffer.holders) {
            DmabufUsage &usage = by_pid[holder.pid];
            usage.pid = holder.pid;
            usage.buffers += 1;
            usage.rss += buffer.size;
            // Rounded down per buffer, as dmabuf_dump does: the processes'
            // Pss never add up to more than the buffers' sizes.
            usage.pss += buffer.size / buffer.holders.size();
        }
    }

    std::vector<DmabufUsage> usages;
    for (auto &[pid, usage] : by_pid)
        usages.push_back(std::move(usage));
    std::stable_sort(usages.begin(), usages.end(),
                     [](const DmabufUsage &a, const DmabufUsage &b) { return a.rss > b.rss; });
    return usages;
}

DmabufTotals totals_of(const DmabufScan &scan)
{
    DmabufTotals totals;
    for (const Dmabuf &buffer : scan.buffers) {
        if (buffer.holders.empty()) {
            totals.kernel_only_buffers += 1;
            totals.kernel_only_bytes += buffer.size;
            continue;
        }
        totals.buffers += 1;
        totals.bytes += buffer.size;
        totals.pss += buffer.size / buffer.holders.size() * buffer.holders.size();
    }
    return totals;
}

IonsvcIndex index_by_inode(const std::vector<IonsvcBuffer> &ionsvc)
{
    IonsvcIndex index;
    for (const IonsvcBuffer &buffer : ionsvc)
        index.emplace(buffer.inode, &buffer);
    return index;
}

} // namespace ionsvc::ctl
