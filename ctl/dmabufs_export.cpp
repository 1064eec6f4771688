// SPDX-License-Identifier: MIT
// `ionsvc-ctl dmabufs --csv` and `--json` (their fields: dmabufs_render.h).
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>

#include "dmabufs_render.h"

namespace ionsvc::ctl {
namespace {

// RFC 4180: a field with a comma, a quote or a line break is quoted, its
// quotes doubled. Printable text has no line break, but names have commas.
std::string csv_field(std::string_view field)
{
    if (field.find_first_of(",\"\r\n") == std::string_view::npos)
        return std::string(field);
    std::string quoted = "\"";
    for (const char c : field) {
        if (c == '"')
            quoted += '"';
        quoted += c;
    }
    return quoted + "\"";
}

std::string csv_line(const std::vector<std::string> &fields)
{
    std::string line;
    for (std::size_t i = 0; i < fields.size(); ++i)
        line += (i > 0 ? "," : "") + csv_field(fields[i]);
    return line + "\n";
}

// The buffer's own fields and the daemon's marks: the columns after
// fd_refs and map_refs are filled in by the caller.
std::vector<std::string> csv_buffer_fields(const Dmabuf &buffer)
{
    return {std::to_string(buffer.inode), std::to_string(buffer.size), size_source_name(buffer.size_source),
            buffer.exporter, buffer.name};
}

std::vector<std::string> csv_ionsvc_fields(const IonsvcIndex &index, std::uint64_t inode)
{
    const auto found = index.find(inode);
    if (found == index.end())
        return {"", "", "", "", ""};
    const IonsvcBuffer &owner = *found->second;
    return {std::to_string(owner.id), owner.heap, std::to_string(owner.pid), owner.comm, std::to_string(owner.uid)};
}

void append(std::vector<std::string> &row, std::vector<std::string> more)
{
    row.insert(row.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
}

nlohmann::json holders_to_json(const Dmabuf &buffer)
{
    nlohmann::json holders = nlohmann::json::array();
    for (const DmabufHolder &holder : buffer.holders)
        holders.push_back({{"pid", holder.pid}, {"fd_refs", holder.fd_refs}, {"map_refs", holder.map_refs}});
    return holders;
}

nlohmann::json ionsvc_to_json(const IonsvcIndex &index, std::uint64_t inode)
{
    const auto found = index.find(inode);
    if (found == index.end())
        return nullptr;
    const IonsvcBuffer &owner = *found->second;
    return {{"id", owner.id}, {"heap", owner.heap}, {"pid", owner.pid}, {"comm", owner.comm}, {"uid", owner.uid}};
}

} // namespace

std::string render_dmabufs_csv(const DmabufScan &scan, const IonsvcBuffers &ionsvc)
{
    const IonsvcIndex index = ionsvc ? index_by_inode(*ionsvc) : IonsvcIndex();
    std::string text = "pid,comm,inode,size,size_source,exporter,name,fd_refs,map_refs,processes,pss_share,"
                       "ionsvc_id,ionsvc_heap,owner_pid,owner_comm,owner_uid\n";
    // Each process's references, by inode (the buffers ascend by inode).
    std::map<std::uint32_t, std::vector<std::pair<const Dmabuf *, const DmabufHolder *>>> references;
    for (const Dmabuf &buffer : scan.buffers)
        for (const DmabufHolder &holder : buffer.holders)
            references[holder.pid].emplace_back(&buffer, &holder);
    for (const DmabufUsage &usage : usage_by_process(scan)) {
        for (const auto &[buffer, holder] : references[usage.pid]) {
            std::vector<std::string> row = {std::to_string(usage.pid), usage.comm};
            append(row, csv_buffer_fields(*buffer));
            append(row, {std::to_string(holder->fd_refs), std::to_string(holder->map_refs),
                         std::to_string(buffer->holders.size()),
                         std::to_string(buffer->size / buffer->holders.size())});
            append(row, csv_ionsvc_fields(index, buffer->inode));
            text += csv_line(row);
        }
    }
    for (const Dmabuf &buffer : scan.buffers) {
        if (!buffer.holders.empty())
            continue;
        std::vector<std::string> row = {"", ""};
        append(row, csv_buffer_fields(buffer));
        append(row, {"", "", "0", ""});
        append(row, csv_ionsvc_fields(index, buffer.inode));
        text += csv_line(row);
    }
    return text;
}

nlohmann::json dmabufs_to_json(const DmabufScan &scan, const IonsvcBuffers &ionsvc)
{
    const IonsvcIndex index = ionsvc ? index_by_inode(*ionsvc) : IonsvcIndex();
    nlohmann::json processes = nlohmann::json::array();
    for (const DmabufUsage &usage : usage_by_process(scan))
        processes.push_back({{"pid", usage.pid},
                             {"comm", usage.comm},
                             {"buffers", usage.buffers},
                             {"rss", usage.rss},
                             {"pss", usage.pss}});

    nlohmann::json buffers = nlohmann::json::array();
    for (const Dmabuf &buffer : scan.buffers)
        buffers.push_back({{"inode", buffer.inode},
                           {"size", buffer.size},
                           {"size_source", size_source_name(buffer.size_source)},
                           {"exporter", buffer.exporter},
                           {"name", buffer.name},
                           {"kernel_only", buffer.kernel_only},
                           {"holders", holders_to_json(buffer)},
                           {"ionsvc", ionsvc_to_json(index, buffer.inode)}});

    const DmabufTotals totals = totals_of(scan);
    return {{"processes", std::move(processes)},
            {"buffers", std::move(buffers)},
            {"totals",
             {{"buffers", totals.buffers},
              {"bytes", totals.bytes},
              {"pss", totals.pss},
              {"kernel_only_buffers", totals.kernel_only_buffers},
              {"kernel_only_bytes", totals.kernel_only_bytes}}},
            {"ionsvc_matched", ionsvc.has_value()},
            {"bufinfo_read", scan.bufinfo_read}};
}

} // namespace ionsvc::ctl
