// SPDX-License-Identifier: MIT
#include "table.h"

#include <algorithm>
#include <cstddef>

namespace ionsvc::ctl {

std::string render_table(const std::vector<Column> &columns, const std::vector<std::vector<std::string>> &rows)
{
    std::vector<std::size_t> widths;
    for (const Column &column : columns)
        widths.push_back(column.header.size());
    for (const auto &row : rows)
        for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
            widths[i] = std::max(widths[i], row[i].size());

    std::string text;
    const auto append_line = [&](const auto &cells) {
        std::string line;
        for (std::size_t i = 0; i < columns.size(); ++i) {
            const std::string_view cell = i < cells.size() ? std::string_view(cells[i]) : std::string_view();
            const std::string padding(widths[i] - cell.size(), ' ');
            if (i > 0)
                line += "  ";
            if (columns[i].align == Align::kRight)
                line += padding;
            line += cell;
            if (columns[i].align == Align::kLeft)
                line += padding;
        }
        line.erase(line.find_last_not_of(' ') + 1);
        text += line;
        text += '\n';
    };

    std::vector<std::string_view> headers;
    for (const Column &column : columns)
        headers.push_back(column.header);
    append_line(headers);
    for (const auto &row : rows)
        append_line(row);
    return text;
}

} // namespace ionsvc::ctl
