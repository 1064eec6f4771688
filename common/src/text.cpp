// SPDX-License-Identifier: MIT
#include <ionsvc/text.h>

#include <algorithm>
#include <cstdio>

namespace ionsvc {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD"; // U+FFFD

bool is_continuation(unsigned char byte)
{
    return (byte & 0xC0) == 0x80;
}

// The length of the well-formed UTF-8 sequence at the start of text and
// its code point, or 0 if none starts there (RFC 3629: no overlong forms,
// no surrogates, nothing past U+10FFFF).
std::size_t decode(std::string_view text, char32_t &code_point)
{
    const auto lead = static_cast<unsigned char>(text[0]);
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    std::size_t length = 0;
    unsigned char low = 0x80; // the second byte's range, which rules out
    unsigned char high = 0xBF; // overlong forms, surrogates and > U+10FFFF
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
        code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        code_point = lead & 0x0F;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        code_point = lead & 0x07;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (text.size() < length)
        return 0;
    const auto second = static_cast<unsigned char>(text[1]);
    if (second < low || second > high)
        return 0;
    for (std::size_t i = 1; i < length; ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (!is_continuation(byte))
            return 0;
        code_point = (code_point << 6) | (byte & 0x3F);
    }
    return length;
}

// Characters that a terminal or a log reader would act on rather than show.
bool needs_escape(char32_t code_point)
{
    return code_point < 0x20 || (code_point >= 0x7F && code_point <= 0x9F) || code_point == 0x2028 ||
           code_point == 0x2029 || (code_point >= 0x202A && code_point <= 0x202E) ||
           (code_point >= 0x2066 && code_point <= 0x2069);
}

std::string escape(char32_t code_point)
{
    char text[16]; // "\\u" and up to 8 hex digits as far as the compiler knows
    if (code_point < 0x80)
        std::snprintf(text, sizeof(text), "\\x%02x", static_cast<unsigned>(code_point));
    else
        std::snprintf(text, sizeof(text), "\\u%04x", static_cast<unsigned>(code_point));
    return text;
}

} // namespace

bool is_printable_text(std::string_view text, std::size_t max_bytes)
{
    if (text.size() > max_bytes)
        return false;
    while (!text.empty()) {
        char32_t code_point = 0;
        const std::size_t length = decode(text, code_point);
        if (length == 0 || needs_escape(code_point))
            return false;
        text.remove_prefix(length);
    }
    return true;
}

std::string printable_text(std::string_view raw, std::size_t max_bytes)
{
    std::string text;
    text.reserve(std::min(raw.size(), max_bytes));
    while (!raw.empty()) {
        char32_t code_point = 0;
        const std::size_t length = decode(raw, code_point);
        std::string_view piece;
        std::string escaped;
        if (length == 0) {
            piece = kReplacement;
        } else if (needs_escape(code_point)) {
            escaped = escape(code_point);
            piece = escaped;
        } else {
            piece = raw.substr(0, length);
        }
        if (text.size() + piece.size() > max_bytes)
            break;
        text += piece;
        raw.remove_prefix(length == 0 ? 1 : length);
    }
    return text;
}

} // namespace ionsvc
