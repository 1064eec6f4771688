// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "books/books.h"
#include "policy/config.h"

namespace ionsvc {

// Why client may not use the heap named heap_name under access ("uid 1000
// may not use heap ion:x (access.heaps.ion:x)"), or nullopt if it may.
std::optional<std::string> access_refusal(const AccessConfig &access, const ClientIdentity &client,
                                          std::string_view heap_name);

// Whether client sees every client in stats: root and the admin group do,
// everyone else sees only the clients of its own uid.
bool sees_every_client(const AccessConfig &access, const ClientIdentity &client);

} // namespace ionsvc
