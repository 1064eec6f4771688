// SPDX-License-Identifier: MIT
// `ionsvc-ctl buffers`: every live buffer, largest first.
#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include <ionsvc/text.h>

#include "render.h"
#include "table.h"

namespace ionsvc::ctl {
namespace {

// Labels and names are shown whole up to this; they are made printable
// again here, as every text from the daemon is before it is shown.
constexpr std::size_t kMaxLabelText = 255;

std::string who(const bufclient::ClientLabel &label)
{
    return std::to_string(label.pid) + "/" + label.comm;
}

std::string holders_text(const bufclient::BufferEntry &buffer)
{
    if (buffer.holders.empty())
        return "-";
    std::string text;
    for (const bufclient::ClientLabel &holder : buffer.holders)
        text += (text.empty() ? "" : ",") + who(holder);
    return text;
}

std::string state_text(const bufclient::BufferEntry &buffer)
{
    if (buffer.orphan_of)
        return "orphan";
    return buffer.holders.size() > 1 ? "shared" : "held";
}

nlohmann::json label_to_json(const bufclient::ClientLabel &label)
{
    return {{"client_id", label.client_id}, {"pid", label.pid}, {"uid", label.uid},
            {"comm", label.comm},           {"name", label.name}};
}

void make_label_printable(bufclient::ClientLabel &label)
{
    make_printable(label.comm, kMaxLabelText);
    make_printable(label.name, kMaxLabelText);
}

} // namespace

void make_printable(std::vector<bufclient::BufferEntry> &buffers)
{
    for (bufclient::BufferEntry &buffer : buffers) {
        make_printable(buffer.heap, kMaxLabelText);
        make_printable(buffer.name, kMaxLabelText);
        make_label_printable(buffer.allocated_by);
        for (bufclient::ClientLabel &holder : buffer.holders)
            make_label_printable(holder);
        if (buffer.orphan_of)
            make_label_printable(*buffer.orphan_of);
    }
}

void sort_largest_first(std::vector<bufclient::BufferEntry> &buffers)
{
    std::sort(buffers.begin(), buffers.end(), [](const auto &a, const auto &b) {
        return a.size != b.size ? a.size > b.size : a.id < b.id;
    });
}

std::string human_age(std::uint64_t ms)
{
    char text[32];
    const std::uint64_t s = ms / 1000;
    if (ms < 1000)
        std::snprintf(text, sizeof(text), "%" PRIu64 "ms", ms);
    else if (s < 60)
        std::snprintf(text, sizeof(text), "%" PRIu64 ".%" PRIu64 "s", s, ms % 1000 / 100);
    else if (s < 3600)
        std::snprintf(text, sizeof(text), "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        std::snprintf(text, sizeof(text), "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
    else
        std::snprintf(text, sizeof(text), "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
    return text;
}

std::string render_buffers_table(const std::vector<bufclient::BufferEntry> &buffers)
{
    std::vector<std::vector<std::string>> rows;
    std::uint64_t total = 0;
    for (const bufclient::BufferEntry &buffer : buffers) {
        const bufclient::ClientLabel &allocator = buffer.allocated_by;
        rows.push_back({std::to_string(buffer.id), buffer.heap, std::to_string(buffer.size), human_size(buffer.size),
                        buffer.name.empty() ? "-" : buffer.name,
                        who(allocator) + (buffer.allocator_connected ? "" : "(gone)"), std::to_string(allocator.uid),
                        allocator.name.empty() ? "-" : allocator.name, state_text(buffer),
                        buffer.orphan_of ? "last:" + who(*buffer.orphan_of) : holders_text(buffer),
                        buffer.from_pool ? "yes" : "no", human_age(buffer.age_ms)});
        total += buffer.size;
    }
    rows.push_back({"total", std::to_string(buffers.size()) + (buffers.size() == 1 ? " buffer" : " buffers"),
                    std::to_string(total), human_size(total)});
    return render_table(
        {
            {"ID", Align::kRight},
            {"HEAP", Align::kLeft},
            {"BYTES", Align::kRight},
            {"SIZE", Align::kRight},
            {"NAME", Align::kLeft},
            {"ALLOCATED_BY", Align::kLeft},
            {"UID", Align::kRight},
            {"CLIENT", Align::kLeft},
            {"STATE", Align::kLeft},
            {"HOLDERS", Align::kLeft},
            {"POOL", Align::kLeft},
            {"AGE", Align::kRight},
        },
        rows);
}

nlohmann::json buffers_to_json(const std::vector<bufclient::BufferEntry> &buffers)
{
    nlohmann::json array = nlohmann::json::array();
    std::uint64_t total = 0;
    for (const bufclient::BufferEntry &buffer : buffers) {
        nlohmann::json allocator = label_to_json(buffer.allocated_by);
        allocator["connected"] = buffer.allocator_connected;
        nlohmann::json holders = nlohmann::json::array();
        for (const bufclient::ClientLabel &holder : buffer.holders)
            holders.push_back(label_to_json(holder));
        array.push_back({
            {"id", buffer.id},
            {"heap", buffer.heap},
            {"size", buffer.size},
            {"name", buffer.name},
            {"inode", buffer.inode},
            {"allocated_by", allocator},
            {"holders", holders},
            {"shared", buffer.holders.size() > 1},
            {"orphan_of", buffer.orphan_of ? label_to_json(*buffer.orphan_of) : nlohmann::json(nullptr)},
            {"from_pool", buffer.from_pool},
            {"age_ms", buffer.age_ms},
        });
        total += buffer.size;
    }
    return {{"buffers", array}, {"total_buffers", buffers.size()}, {"total_bytes", total}};
}

} // namespace ionsvc::ctl
