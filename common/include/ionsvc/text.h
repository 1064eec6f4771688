// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ionsvc {

// Text that a client chose (its comm, its name, a buffer's name), made safe
// to put in a protobuf string, a log line or a terminal:
//   - valid UTF-8: each byte that does not start a well-formed sequence
//     (overlong forms and surrogates included) becomes U+FFFD;
//   - no control characters: C0 and DEL are written as \xNN, C1 as \u00NN,
//     and the characters that reorder or break lines on a terminal (U+2028,
//     U+2029, the bidirectional embeddings, overrides and isolates) as \uNNNN;
//   - at most max_bytes, cut between characters (an escape is never cut).
// Printable text comes back unchanged, so applying it twice is applying it
// once: the daemon makes text printable where it enters, and a tool that
// prints it may do so again.
std::string printable_text(std::string_view raw, std::size_t max_bytes);

// Whether printable_text would return text as it is: the check that lets
// the common case keep its string_view and make no copy.
bool is_printable_text(std::string_view text, std::size_t max_bytes);

} // namespace ionsvc
