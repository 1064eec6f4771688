// SPDX-License-Identifier: MIT
#include <ionsvc/text.h>

#include <string>

#include <gtest/gtest.h>

namespace {

using ionsvc::is_printable_text;
using ionsvc::printable_text;

constexpr std::size_t kRoomy = 1024;

TEST(PrintableText, KeepsPrintableTextAsItIs)
{
    const std::string text = "camera-hal: Café ☕ 𝄞 \\x1b stays";
    EXPECT_EQ(printable_text(text, kRoomy), text);
    EXPECT_TRUE(is_printable_text(text, kRoomy));
}

TEST(PrintableText, WritesControlCharactersAsEscapes)
{
    EXPECT_EQ(printable_text("a\nb\rc\td\x1b[31me\x7f", kRoomy), "a\\x0ab\\x0dc\\x09d\\x1b[31me\\x7f");
    EXPECT_EQ(printable_text(std::string("nul\0end", 7), kRoomy), "nul\\x00end");
    EXPECT_FALSE(is_printable_text("a\nb", kRoomy));
}

TEST(PrintableText, WritesC1ControlsAndTerminalReorderingAsEscapes)
{
    // U+009B (CSI), U+2028 (line separator), U+202E (right-to-left override), U+2066 (isolate).
    EXPECT_EQ(printable_text("\xC2\x9B" "2J|\xE2\x80\xA8|\xE2\x80\xAE|\xE2\x81\xA6", kRoomy),
              "\\u009b2J|\\u2028|\\u202e|\\u2066");
}

TEST(PrintableText, ReplacesEachByteOfMalformedUtf8)
{
    EXPECT_EQ(printable_text("\xff", kRoomy), "\xEF\xBF\xBD");
    // A lead byte whose sequence is cut short, then a stray continuation byte.
    EXPECT_EQ(printable_text("a\xE2\x82" "b\x80", kRoomy), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD");
    EXPECT_FALSE(is_printable_text("\xff", kRoomy));
}

TEST(PrintableText, RefusesOverlongFormsSurrogatesAndCodePointsPastUnicode)
{
    for (const std::string bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80"}) {
        const std::string text = printable_text(bad, kRoomy);
        EXPECT_EQ(text.find_first_not_of("\xEF\xBF\xBD"), std::string::npos) << "input of " << bad.size() << " bytes";
        EXPECT_FALSE(text.empty());
    }
}

TEST(PrintableText, CutsBetweenCharactersNeverInsideOneOrAnEscape)
{
    EXPECT_EQ(printable_text("ab☕", 4), "ab");   // ☕ is 3 bytes: 5 would not fit in 4
    EXPECT_EQ(printable_text("ab☕", 5), "ab☕");
    EXPECT_EQ(printable_text("ab\n", 5), "ab");   // "\x0a" is 4 bytes
    EXPECT_EQ(printable_text("abcdef", 3), "abc");
    EXPECT_FALSE(is_printable_text("abcdef", 3));
}

TEST(PrintableText, IsTheSameAppliedTwiceAsOnce)
{
    const std::string hostile = "\x1b]0;owned\x07\xff\xC2\x9B\n\xE2\x80\xAEname\xE2\x82";
    const std::string once = printable_text(hostile, 40);
    EXPECT_EQ(printable_text(once, 40), once);
    EXPECT_TRUE(is_printable_text(once, 40));
}

} // namespace
