// SPDX-License-Identifier: MIT
#include "dmabufs_parse.h"

#include <algorithm>
#include <charconv>
#include <cstddef>

namespace ionsvc::ctl {
namespace {

// DMA_BUF_NAME_LEN less its NUL.
constexpr std::size_t kMaxDmabufName = 31;
// Every number of a bufinfo line is printed "%08...".
constexpr std::size_t kBufinfoDigits = 8;

std::optional<std::uint64_t> to_number(std::string_view text, int base = 10)
{
    std::uint64_t value = 0;
    const char *end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value, base);
    if (text.empty() || error != std::errc() || stop != end)
        return std::nullopt;
    return value;
}

// The next line of text (without its newline), advancing text past it.
std::string_view next_line(std::string_view &text)
{
    const std::size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    return line;
}

// Splits off the next whitespace-separated word of text.
std::string_view next_word(std::string_view &text)
{
    const std::size_t start = std::min(text.find_first_not_of(' '), text.size());
    text.remove_prefix(start);
    const std::size_t stop = std::min(text.find(' '), text.size());
    const std::string_view word = text.substr(0, stop);
    text.remove_prefix(stop);
    return word;
}

// fdinfo's name: the rest of the file, as the kernel prints it last. A name
// that is longer than a name can be means something follows it on a newer
// kernel: then only its first line.
std::string fdinfo_name(std::string_view rest)
{
    if (rest.ends_with('\n'))
        rest.remove_suffix(1);
    if (rest.size() > kMaxDmabufName)
        rest = rest.substr(0, rest.find('\n'));
    return std::string(rest);
}

bool is_padded_number(std::string_view field, int base)
{
    return field.size() >= kBufinfoDigits && to_number(field, base).has_value();
}

} // namespace

std::optional<DmabufRecord> parse_dmabuf_fdinfo(std::string_view text)
{
    std::optional<std::uint64_t> inode;
    std::optional<std::uint64_t> size;
    std::optional<std::string> exporter;
    DmabufRecord parsed;
    const char *const end = text.data() + text.size();
    // The first of each key wins: the kernel's lines all come before the
    // name, the only text a process may choose.
    while (!text.empty()) {
        const std::string_view line = next_line(text);
        const std::size_t colon = line.find(":\t");
        if (colon == std::string_view::npos)
            continue;
        const std::string_view key = line.substr(0, colon);
        const std::string_view value = line.substr(colon + 2);
        if (key == "ino" && !inode)
            inode = to_number(value);
        else if (key == "size" && !size)
            size = to_number(value);
        else if (key == "exp_name" && !exporter)
            exporter = std::string(value);
        else if (key == "name" && exporter) {
            parsed.name = fdinfo_name(std::string_view(value.data(), static_cast<std::size_t>(end - value.data())));
            break;
        }
    }
    if (!inode || !size || !exporter)
        return std::nullopt;
    parsed.inode = *inode;
    parsed.size = *size;
    parsed.exporter = std::move(*exporter);
    return parsed;
}

bool is_dmabuf_link(std::string_view target)
{
    return target.starts_with("/dmabuf:") || target == "anon_inode:dmabuf";
}

std::optional<MapsDmabuf> parse_dmabuf_maps_line(std::string_view line)
{
    const std::string_view range = next_word(line);
    next_word(line); // permissions
    const std::string_view offset = next_word(line);
    const std::string_view device = next_word(line);
    const std::string_view inode = next_word(line);
    line.remove_prefix(std::min(line.find_first_not_of(' '), line.size()));
    constexpr std::string_view kPrefix = "/dmabuf:";
    if (!line.starts_with(kPrefix))
        return std::nullopt;

    const std::size_t dash = range.find('-');
    const auto start = to_number(range.substr(0, dash), 16);
    const auto end = dash == std::string_view::npos ? std::nullopt : to_number(range.substr(dash + 1), 16);
    const auto offset_value = to_number(offset, 16);
    const auto inode_value = to_number(inode);
    if (!start || !end || *end < *start || !offset_value || !inode_value || *inode_value == 0
        || device.find(':') == std::string_view::npos)
        return std::nullopt;
    return MapsDmabuf{*start, *end, *offset_value, std::string(device), *inode_value,
                      std::string(line.substr(kPrefix.size()))};
}

bool is_anonymous_device(std::string_view device)
{
    const auto major = to_number(device.substr(0, device.find(':')), 16);
    return major && *major == 0;
}

std::vector<DmabufRecord> parse_bufinfo(std::string_view text)
{
    std::vector<DmabufRecord> entries;
    while (!text.empty()) {
        std::string_view line = next_line(text);
        if (line.starts_with('\t'))
            continue; // fences and attachments
        std::vector<std::string_view> fields;
        for (int i = 0; i < 6 && !line.empty(); ++i) {
            const std::size_t tab = line.find('\t');
            if (tab == std::string_view::npos)
                break;
            fields.push_back(line.substr(0, tab));
            line.remove_prefix(tab + 1);
        }
        if (fields.size() != 6 || !is_padded_number(fields[0], 10) || !is_padded_number(fields[1], 16)
            || !is_padded_number(fields[2], 16) || !is_padded_number(fields[3], 10)
            || !is_padded_number(fields[5], 10))
            continue; // the header, totals, or a piece of a name
        entries.push_back({*to_number(fields[5]), *to_number(fields[0]), std::string(fields[4]),
                           line == "<none>" ? std::string() : std::string(line)});
    }
    return entries;
}

} // namespace ionsvc::ctl
