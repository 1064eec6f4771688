// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include "books/books.h"

namespace ionsvc {

// label into a message that has its fields under the same names: a buffer
// listing's wire::ClientLabel, the restart state's recovery::Label.
template<typename Message>
void fill_label(const ClientLabel &label, Message &out)
{
    out.set_client_id(label.id);
    out.set_pid(static_cast<std::uint32_t>(label.pid));
    out.set_uid(label.uid);
    out.set_comm(label.comm);
    out.set_name(label.name);
}

} // namespace ionsvc
