// SPDX-License-Identifier: MIT
// How a fuzz input reads as a conversation with the daemon: a sequence of
// packets, each a header byte (its low bit: which of two clients sends it),
// a 16-bit little-endian length and that many bytes (fewer at the end).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace ionsvc::fuzz {

inline constexpr std::size_t kClients = 2;

template<typename Handle>
void for_each_packet(std::span<const std::uint8_t> input, Handle &&handle)
{
    while (input.size() >= 3) {
        const std::size_t client = input[0] & 1;
        const std::size_t length = std::min<std::size_t>(input[1] | (input[2] << 8), input.size() - 3);
        const auto *bytes = reinterpret_cast<const std::byte *>(input.data() + 3);
        handle(client, std::span<const std::byte>(bytes, length));
        input = input.subspan(3 + length);
    }
}

// One packet of client, framed as for_each_packet reads it.
inline std::string frame(std::size_t client, const std::string &packet)
{
    std::string framed;
    framed += static_cast<char>(client & 1);
    framed += static_cast<char>(packet.size() & 0xff);
    framed += static_cast<char>((packet.size() >> 8) & 0xff);
    return framed + packet;
}

} // namespace ionsvc::fuzz
