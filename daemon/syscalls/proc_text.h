// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <string_view>

namespace ionsvc {

// In the "key: value" lines of a /proc file (fdinfo, meminfo), the value
// of the first line that starts with key (given with its colon), without
// the blanks before it; none if no line does.
inline std::optional<std::string_view> proc_field(std::string_view text, std::string_view key)
{
    for (std::size_t start = 0; start < text.size();) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos)
            end = text.size();
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        if (!line.starts_with(key))
            continue;
        line.remove_prefix(key.size());
        while (!line.empty() && (line.front() == '\t' || line.front() == ' '))
            line.remove_prefix(1);
        return line;
    }
    return std::nullopt;
}

// The buffer name in what /proc/self/fd/<fd> links to: a dma-buf's
// "/dmabuf:<name>" (the kernel's dmabuf file system), a memfd's
// "/memfd:<name> (deleted)". Anything else is returned whole.
inline std::string_view buffer_name_in_fd_link(std::string_view link)
{
    for (const std::string_view prefix : {std::string_view{"/dmabuf:"}, std::string_view{"/memfd:"}}) {
        if (!link.starts_with(prefix))
            continue;
        link.remove_prefix(prefix.size());
        if (prefix == "/memfd:" && link.ends_with(" (deleted)"))
            link.remove_suffix(std::string_view{" (deleted)"}.size());
        return link;
    }
    return link;
}

} // namespace ionsvc
