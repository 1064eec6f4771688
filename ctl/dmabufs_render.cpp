// SPDX-License-Identifier: MIT
#include "dmabufs_render.h"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include <ionsvc/text.h>

#include "render.h"
#include "table.h"

namespace ionsvc::ctl {
namespace {

// The most of one text shown: comms are 15 bytes and names 31, so only a
// hostile daemon reply would reach it.

std::string size_text(const Dmabuf &buffer)
{
    const std::string size = human_size(buffer.size);
    return buffer.size_source == SizeSource::kMaps ? ">=" + size : size;
}

std::string or_dash(const std::string &text) { return text.empty() ? "-" : text; }

std::string owner_text(const IonsvcBuffer &owner)
{
    return owner.comm + " (pid " + std::to_string(owner.pid) + ", uid " + std::to_string(owner.uid) + ")";
}

std::vector<std::string> process_row(const DmabufUsage &usage)
{
    return {std::to_string(usage.pid), usage.comm, std::to_string(usage.buffers), human_size(usage.rss),
            human_size(usage.pss)};
}

std::string process_table(const DmabufScan &scan)
{
    std::vector<std::vector<std::string>> rows;
    for (const DmabufUsage &usage : usage_by_process(scan))
        rows.push_back(process_row(usage));
    const DmabufTotals totals = totals_of(scan);
    rows.push_back({"total", "", std::to_string(totals.buffers), human_size(totals.bytes), human_size(totals.pss)});
    return render_table({{"PID", Align::kRight},
                         {"COMM", Align::kLeft},
                         {"BUFFERS", Align::kRight},
                         {"RSS", Align::kRight},
                         {"PSS", Align::kRight}},
                        rows);
}

std::vector<std::string> buffer_row(const Dmabuf &buffer, const IonsvcIndex &index)
{
    std::uint64_t fd_refs = 0;
    std::uint64_t map_refs = 0;
    for (const DmabufHolder &holder : buffer.holders) {
        fd_refs += holder.fd_refs;
        map_refs += holder.map_refs;
    }
    std::vector<std::string> row = {std::to_string(buffer.inode), size_text(buffer), or_dash(buffer.exporter),
                                    or_dash(buffer.name),
                                    buffer.kernel_only ? "kernel" : std::to_string(buffer.holders.size()),
                                    std::to_string(fd_refs), std::to_string(map_refs)};
    const auto found = index.find(buffer.inode);
    if (found == index.end()) {
        row.insert(row.end(), {"-", "-", "-"});
    } else {
        const IonsvcBuffer &owner = *found->second;
        row.insert(row.end(), {std::to_string(owner.id), owner.heap, owner_text(owner)});
    }
    return row;
}

std::string buffer_table(const DmabufScan &scan, const IonsvcIndex &index)
{
    std::vector<std::vector<std::string>> rows;
    for (const Dmabuf &buffer : scan.buffers)
        rows.push_back(buffer_row(buffer, index));
    return render_table({{"INODE", Align::kRight},
                         {"SIZE", Align::kRight},
                         {"EXPORTER", Align::kLeft},
                         {"NAME", Align::kLeft},
                         {"PROCS", Align::kRight},
                         {"FD_REFS", Align::kRight},
                         {"MAP_REFS", Align::kRight},
                         {"IONSVC", Align::kRight},
                         {"HEAP", Align::kLeft},
                         {"OWNER", Align::kLeft}},
                        rows);
}

// dmabuf_dump -a: buffers down, processes across.
std::string reference_grid(const DmabufScan &scan)
{
    std::vector<std::string> headers; // owns what the columns point at
    for (const DmabufProcess &process : scan.processes)
        headers.push_back(process.comm + "[" + std::to_string(process.pid) + "]");
    std::vector<Column> columns = {
        {"INODE", Align::kRight}, {"SIZE", Align::kRight}, {"EXPORTER", Align::kLeft}, {"NAME", Align::kLeft}};
    for (const std::string &header : headers)
        columns.push_back({header, Align::kRight});

    std::vector<std::vector<std::string>> rows;
    for (const Dmabuf &buffer : scan.buffers) {
        std::vector<std::string> row = {std::to_string(buffer.inode), size_text(buffer), or_dash(buffer.exporter),
                                        or_dash(buffer.name)};
        auto holder = buffer.holders.begin();
        for (const DmabufProcess &process : scan.processes) {
            // Both lists ascend by pid: one walk fills the row.
            if (holder != buffer.holders.end() && holder->pid == process.pid) {
                row.push_back(std::to_string(holder->fd_refs) + "/" + std::to_string(holder->map_refs));
                ++holder;
            } else {
                row.push_back("-");
            }
        }
        rows.push_back(std::move(row));
    }
    return render_table(columns, rows);
}

std::string notes(const DmabufScan &scan, const IonsvcBuffers &ionsvc)
{
    std::string text;
    if (!ionsvc)
        text += "buffers could not be matched to ionsvc: the daemon was not reachable\n";
    if (!scan.bufinfo_read)
        text += "kernel-only buffers not shown: /sys/kernel/debug/dma_buf/bufinfo is not readable\n";
    const DmabufTotals totals = totals_of(scan);
    if (totals.kernel_only_buffers > 0)
        text += "kernel-only buffers (held by no process shown): " + std::to_string(totals.kernel_only_buffers)
              + ", " + human_size(totals.kernel_only_bytes) + "\n";
    return text;
}


} // namespace

void make_printable(DmabufScan &scan)
{
    for (DmabufProcess &process : scan.processes)
        make_printable(process.comm);
    for (Dmabuf &buffer : scan.buffers) {
        make_printable(buffer.exporter);
        make_printable(buffer.name);
    }
}

void make_printable(std::vector<IonsvcBuffer> &ionsvc)
{
    for (IonsvcBuffer &buffer : ionsvc) {
        make_printable(buffer.heap);
        make_printable(buffer.comm);
    }
}

std::string render_dmabufs_text(const DmabufScan &scan, const IonsvcBuffers &ionsvc, bool all)
{
    const IonsvcIndex index = ionsvc ? index_by_inode(*ionsvc) : IonsvcIndex();
    std::string text = process_table(scan);
    text += '\n';
    text += buffer_table(scan, index);
    if (all) {
        text += "\nreferences per process (fd refs/map refs):\n";
        text += reference_grid(scan);
    }
    const std::string closing = notes(scan, ionsvc);
    if (!closing.empty())
        text += '\n' + closing;
    return text;
}

std::string render_dmabufs(const DmabufScan &scan, const IonsvcBuffers &ionsvc, DmabufFormat format, bool all)
{
    DmabufScan printable = scan;
    make_printable(printable);
    IonsvcBuffers marks = ionsvc;
    if (marks)
        make_printable(*marks);
    switch (format) {
    case DmabufFormat::kText: return render_dmabufs_text(printable, marks, all);
    case DmabufFormat::kCsv: return render_dmabufs_csv(printable, marks);
    case DmabufFormat::kJson: return json_text(dmabufs_to_json(printable, marks));
    }
    return {};
}

} // namespace ionsvc::ctl
