// SPDX-License-Identifier: MIT
// Plain-text tables for ionsvc-ctl's views.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ionsvc::ctl {

enum class Align { kLeft, kRight };

struct Column
{
    std::string_view header;
    Align align;
};

// Columns two spaces apart, each as wide as its widest cell; no trailing
// blanks, so a left-aligned last column does not pad lines.
std::string render_table(const std::vector<Column> &columns, const std::vector<std::vector<std::string>> &rows);

} // namespace ionsvc::ctl
