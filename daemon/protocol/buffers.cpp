// SPDX-License-Identifier: MIT
// Buffers: every live buffer, a page at a time, as the requester may see it.
#include <algorithm>

#include <fmt/format.h>

#include <ionsvc/text.h>

#include "protocol/client_label.h"
#include "protocol/service.h"
#include "syscalls/proc_text.h"

namespace ionsvc {

namespace {

// Buffers per reply: a few hundred bytes each, so that a page stays far
// below the socket's send buffer, which bounds a SOCK_SEQPACKET message.
constexpr std::size_t kBuffersPerPage = 256;

} // namespace

void Service::list_buffers(ClientContext &requester, const wire::BuffersRequest &request, Response &response)
{
    std::optional<HeapIndex> heap;
    if (!request.heap().empty()) {
        // A heap's name or an alias, as an allocation would take it.
        const auto found = allocator_.find_heap(request.heap());
        if (!found) {
            set_error(response, StatusCode::kInvalidArgument,
                      fmt::format("no heap or alias is named \"{}\"; this daemon has: {}",
                                  printable_text(request.heap(), kMaxNameLength), allocator_.heap_names()));
            return;
        }
        heap = *found;
    }
    std::optional<pid_t> pid;
    if (request.has_pid())
        pid = static_cast<pid_t>(request.pid());
    const std::optional<uid_t> uid = visible_uid(requester);
    // As for stats, the kernel's word now rather than at the last tick; the
    // first page only, so that a listing costs one budget of counting.
    if (request.after_id() == 0)
        books_.release_unreferenced_now(pid, uid, limits_.fresh_count_budget, reference_counter_);

    std::vector<BufferId> page = buffers_in_scope(pid, uid, heap, request.after_id());
    const bool more = page.size() > kBuffersPerPage;
    if (more) {
        std::nth_element(page.begin(), page.begin() + kBuffersPerPage, page.end());
        page.resize(kBuffersPerPage);
    }
    std::sort(page.begin(), page.end());

    wire::BuffersReply &reply = *response.reply.mutable_buffers();
    const std::int64_t now_ms = coarse_now_ms();
    for (const BufferId id : page)
        add_buffer_entry(id, *books_.buffer(id), now_ms, reply);
    reply.set_more(more);
}

std::vector<BufferId> Service::buffers_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid,
                                                std::optional<HeapIndex> heap, BufferId after) const
{
    const auto wanted = [&](BufferId id, const BufferRecord &buffer) {
        return id > after && (!heap || buffer.heap == *heap);
    };
    std::vector<BufferId> ids;
    if (!pid && !uid) {
        for (const auto &[id, buffer] : books_.buffers()) {
            if (wanted(id, buffer))
                ids.push_back(id);
        }
        return ids;
    }
    // Some clients' only: through their handles, not every buffer.
    ids = orphans_in_scope(pid, uid);
    for (const auto &[client_id, record] : clients_in_scope(pid, uid)) {
        for (const auto &[id, handle] : record->handles)
            ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::erase_if(ids, [&](BufferId id) { return !wanted(id, *books_.buffer(id)); });
    return ids;
}

void Service::add_buffer_entry(BufferId id, const BufferRecord &buffer, std::int64_t now_ms,
                               wire::BuffersReply &reply) const
{
    wire::BufferEntry &entry = *reply.add_buffers();
    entry.set_id(id);
    entry.set_heap(std::string(allocator_.heap(buffer.heap).heap->name()));
    entry.set_size(buffer.size);
    // Any holder of a dma-buf may rename it: the kernel's name is text from
    // a client, and enters here.
    if (const auto link = syscalls_.fd_link(buffer.fd.get()))
        entry.set_name(printable_text(buffer_name_in_fd_link(*link), kMaxNameLength));
    if (const auto inode = syscalls_.inode(buffer.fd.get()))
        entry.set_inode(*inode);
    if (buffer.allocated_by) {
        fill_label(*buffer.allocated_by, *entry.mutable_allocated_by());
        entry.set_allocator_connected(books_.client(buffer.allocated_by->id) != nullptr);
    }
    for (const ClientId holder : buffer.holders)
        fill_label(*books_.client(holder)->label, *entry.add_holders());
    if (buffer.holders.empty()) {
        if (const auto orphan = books_.orphans().find(id);
            orphan != books_.orphans().end() && orphan->second.last_client)
            fill_label(*orphan->second.last_client, *entry.mutable_orphan_of());
    }
    entry.set_from_pool(buffer.from_pool);
    entry.set_age_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ms - buffer.born_ms)));
}

} // namespace ionsvc
