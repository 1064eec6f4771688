// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <ionsvc/status.h>

namespace ionsvc {

// How the core's -errno results read in a reply: the Service's requests
// turn them into a status and a message with these, and nothing below
// protocol/ knows of statuses.

// The kernel's text for -errno ("Cannot allocate memory").
std::string errno_text(int negative_errno);

// A heap that failed to make a buffer: the request was checked already, so
// anything but a shortage is the heap's (or its device's) fault, not the
// client's. ENODEV here is a device that went away, not an unknown heap.
StatusCode allocation_status(int negative_errno);

// What running out of fds means for a client, to add to the message: the
// daemon holds one fd per live buffer, so its fd limit is the most live
// buffers it can hold. Empty for other errors.
std::string out_of_fds_hint(int negative_errno);

} // namespace ionsvc
