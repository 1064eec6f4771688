// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <ionsvc/unique_fd.h>

#include "allocator.h"

namespace ionsvc {

using ClientId = std::uint64_t;
using BufferId = std::uint64_t;

// Who a client is, taken from SO_PEERCRED and /proc at connect.
struct ClientIdentity
{
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string comm;
};

// Bytes and buffers held, and the most bytes ever held at once.
struct Usage
{
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::uint64_t peak_bytes = 0;

    void add(std::uint64_t size)
    {
        bytes += size;
        ++buffers;
        if (bytes > peak_bytes)
            peak_bytes = bytes;
    }
    void remove(std::uint64_t size)
    {
        bytes -= size;
        --buffers;
    }
};

// A live buffer. The daemon keeps one reference to every buffer it handed
// out, in fd, until the buffer leaves the books.
struct BufferRecord
{
    HeapIndex heap;
    std::uint64_t size;
    UniqueFD fd;
};

struct ClientRecord
{
    ClientIdentity identity;
    std::string name; // the client's own name for itself, from Hello
    // "<comm>:<pid>": the name of its buffers that it did not name itself.
    std::string default_buffer_name;
    std::vector<Usage> usage; // indexed by HeapIndex
    std::unordered_map<BufferId, BufferRecord> buffers;
};

// The daemon's accounting: who holds which buffer in which heap. A client is
// one connection, as an ION client was one open of /dev/ion. Adding and
// removing a buffer costs O(1); removing a client costs O(its buffers).
class Books
{
public:
    explicit Books(std::size_t heap_count);

    ClientId add_client(ClientIdentity identity);
    // Drops the client and every buffer it holds (closing the daemon's
    // references to them).
    void remove_client(ClientId client);
    void set_client_name(ClientId client, std::string name);

    // Enters a buffer of size bytes in heap for client; the books keep fd.
    BufferId add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd);
    // Removes one of client's buffers; -ENOENT if the client holds no
    // buffer of that id (whoever else may hold it).
    int remove_buffer(ClientId client, BufferId buffer);

    const ClientRecord *client(ClientId client) const;
    const BufferRecord *buffer(ClientId client, BufferId buffer) const;
    // Every client, in no particular order.
    const std::unordered_map<ClientId, ClientRecord> &clients() const { return clients_; }
    const Usage &heap_usage(HeapIndex heap) const { return heap_usage_.at(heap); }
    std::size_t heap_count() const { return heap_usage_.size(); }

private:
    std::unordered_map<ClientId, ClientRecord> clients_;
    std::vector<Usage> heap_usage_;
    ClientId next_client_id_ = 1;
    BufferId next_buffer_id_ = 1;
};

} // namespace ionsvc
