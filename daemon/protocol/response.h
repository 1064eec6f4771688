// SPDX-License-Identifier: MIT
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <ionsvc/status.h>

#include "books/books.h"
#include "policy/share_table.h"
#include "buffer.pb.h"

namespace ionsvc {

// What the daemon knows of one connection beyond the books.
struct ClientContext
{
    ClientId id = 0;
    bool greeted = false;
    // Between the first and the last page of a Reclaim: the ids named so
    // far, each once (at most the buffers the client holds).
    bool reclaiming = false;
    std::unordered_set<BufferId> reclaimed;
};

// A reply and the fds that travel with it. The fds are lent by the books:
// they stay valid until the client's next request or its disconnect.
struct Response
{
    wire::Reply reply;
    std::vector<int> fds;
    std::vector<BufferId> allocated; // the buffers whose fds these are
    bool silent = false;             // the request asked for no reply
    // An import of a buffer the client held already: an undo must leave
    // that hold alone.
    bool held_before = false;
    // The single-use token an import used up, and what it granted: an undo
    // gives it back.
    std::string used_token;
    ShareTable::Grant used_grant;

    // Empties it for the next request, keeping the memory protobuf already
    // allocated (a fresh Reply per request costs several mallocs).
    void clear()
    {
        // Clearing the Reply would delete its body. A small Alloc body is
        // kept aside instead, with its BufferInfos and their strings, for
        // the next Alloc reply to fill in again; a batch's would hold its
        // memory (100 bytes a buffer) for as long as the client stays.
        if (reply.has_alloc() && reply.alloc().buffers_size() <= kKeptAllocBuffers) {
            spare_alloc_.reset(reply.release_alloc());
            spare_alloc_->Clear();
        }
        reply.Clear();
        fds.clear();
        allocated.clear();
        silent = false;
        held_before = false;
        used_token.clear();
    }

    // The reply's Alloc body, the one kept aside if there is one.
    wire::AllocReply &alloc_reply()
    {
        if (spare_alloc_)
            reply.set_allocated_alloc(spare_alloc_.release());
        return *reply.mutable_alloc();
    }

private:
    static constexpr int kKeptAllocBuffers = 4;
    std::unique_ptr<wire::AllocReply> spare_alloc_;
};

enum class Disposition {
    kKeepOpen,
    kClose, // a protocol violation: send the reply, then hang up
};

// Fills response with an error status and its message.
void set_error(Response &response, StatusCode code, std::string message);

} // namespace ionsvc
