// SPDX-License-Identifier: MIT
#include "books.h"

#include <cerrno>

namespace ionsvc {

Books::Books(std::size_t heap_count) : heap_usage_(heap_count) {}

ClientId Books::add_client(ClientIdentity identity)
{
    const ClientId id = next_client_id_++;
    ClientRecord &record = clients_[id];
    record.default_buffer_name = identity.comm + ":" + std::to_string(identity.pid);
    record.identity = std::move(identity);
    record.usage.resize(heap_usage_.size());
    return id;
}

void Books::remove_client(ClientId client)
{
    const auto it = clients_.find(client);
    if (it == clients_.end())
        return;
    for (const auto &[id, buffer] : it->second.buffers)
        heap_usage_[buffer.heap].remove(buffer.size);
    clients_.erase(it);
}

void Books::set_client_name(ClientId client, std::string name)
{
    if (const auto it = clients_.find(client); it != clients_.end())
        it->second.name = std::move(name);
}

BufferId Books::add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd)
{
    ClientRecord &record = clients_.at(client);
    const BufferId id = next_buffer_id_++;
    record.buffers.emplace(id, BufferRecord{heap, size, std::move(fd)});
    record.usage[heap].add(size);
    heap_usage_[heap].add(size);
    return id;
}

int Books::remove_buffer(ClientId client, BufferId buffer)
{
    const auto client_it = clients_.find(client);
    if (client_it == clients_.end())
        return -ENOENT;
    ClientRecord &record = client_it->second;
    const auto it = record.buffers.find(buffer);
    if (it == record.buffers.end())
        return -ENOENT;
    record.usage[it->second.heap].remove(it->second.size);
    heap_usage_[it->second.heap].remove(it->second.size);
    record.buffers.erase(it);
    return 0;
}

const ClientRecord *Books::client(ClientId client) const
{
    const auto it = clients_.find(client);
    return it == clients_.end() ? nullptr : &it->second;
}

const BufferRecord *Books::buffer(ClientId client, BufferId buffer) const
{
    const ClientRecord *record = this->client(client);
    if (!record)
        return nullptr;
    const auto it = record->buffers.find(buffer);
    return it == record->buffers.end() ? nullptr : &it->second;
}

} // namespace ionsvc
