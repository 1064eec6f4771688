// SPDX-License-Identifier: MIT
#include "devices.h"

#include <fcntl.h>
#include <linux/dma-heap.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <bufclient/bufclient.h>

#include "ion.h"

namespace ionsvc::compat {
namespace {

using bufclient::HeapInfo;

// An ION heap as this layer shows it: the daemon's own ION heaps, or, when
// it serves none, one per alias by type.
struct IonHeap
{
    std::string name;   // as ION_IOC_HEAP_QUERY reports it
    std::uint32_t type; // ION_HEAP_TYPE_*
    std::uint32_t id;
    std::string daemon_heap; // synthetic: the alias to ask for; else empty (ask by mask)
};

struct State
{
    // The one connection of this process, made at the first open, and what
    // it learnt of the daemon's heaps. Held across calls into libbufclient;
    // never taken by the fd wrappers (libbufclient closes fds too).
    std::mutex connection_mutex;
    std::optional<bufclient::Client> connection;
    std::vector<HeapInfo> heaps;

    // The stand-in fds. Only table operations run under it.
    std::mutex table_mutex;
    std::unordered_map<int, Device> devices;
    // How many there are: with none, the fd wrappers take no lock.
    std::atomic<std::size_t> device_count{0};
};

// Made at first use and never destroyed: any library's constructors and
// exit handlers may open, close or dup before this library's statics
// exist or after they would be gone.
State &state()
{
    static State *const instance = new State;
    return *instance;
}

bool debug_enabled()
{
    static const bool enabled = std::getenv("IONSVC_COMPAT_DEBUG") != nullptr;
    return enabled;
}

void say(const std::string &line)
{
    std::fprintf(stderr, "ionsvc-compat: %s\n", line.c_str());
}

// What a daemon status becomes for a program that expects the kernel.
int errno_of(const bufclient::Error &error)
{
    switch (error.code) {
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kNoSuchHeap: return ENODEV;
    case StatusCode::kOutOfMemory:
    case StatusCode::kQuotaExceeded: return ENOMEM;
    case StatusCode::kPermissionDenied: return EACCES;
    case StatusCode::kResourceExhausted: return EMFILE;
    default: return EIO;
    }
}

int refused(const bufclient::Error &error)
{
    const int error_number = errno_of(error);
    // A refusal the program cannot tell apart from the kernel's is worth a
    // line only when asked for; a lost daemon always is.
    if (debug_enabled() || error_number == EIO)
        say(std::string(status_name(error.code)) + ": " + error.message);
    return -error_number;
}

// Connects if not yet connected; false (said once) if the daemon cannot be
// reached. Called with connection_mutex held.
bool connected()
{
    if (state().connection)
        return true;
    auto client = bufclient::Client::connect({.client_name = "ionsvc-compat"});
    if (!client) {
        if (debug_enabled())
            say(client.error().message);
        return false;
    }
    auto listed = client->list_heaps();
    if (!listed)
        return false;
    state().heaps = std::move(*listed);
    state().connection.emplace(std::move(*client));
    return true;
}

bool serves(std::string_view name)
{
    return std::any_of(state().heaps.begin(), state().heaps.end(), [&](const HeapInfo &heap) {
        return heap.name == name || std::find(heap.aliases.begin(), heap.aliases.end(), name) != heap.aliases.end();
    });
}

// The daemon heap or alias a dma-heap node stands for: dma-heap:<node>
// itself, a heap or alias of that name, else for a CMA node the 'contig'
// alias. Empty if none is served.
std::string daemon_heap_of_node(const std::string &node)
{
    if (serves("dma-heap:" + node))
        return "dma-heap:" + node;
    if (serves(node))
        return node;
    const bool cma = node == "linux,cma" || node == "reserved" || node == "default_cma_region" ||
                     node.starts_with("cma");
    if (cma && serves("contig"))
        return "contig";
    return {};
}

std::uint32_t ion_type_of(const std::string &type)
{
    static const std::pair<std::string_view, std::uint32_t> kTypes[] = {
        {"system", ION_HEAP_TYPE_SYSTEM},     {"system_contig", ION_HEAP_TYPE_SYSTEM_CONTIG},
        {"carveout", ION_HEAP_TYPE_CARVEOUT}, {"chunk", ION_HEAP_TYPE_CHUNK},
        {"dma", ION_HEAP_TYPE_DMA},
    };
    for (const auto &[name, value] : kTypes) {
        if (type == name)
            return value;
    }
    return ION_HEAP_TYPE_CUSTOM;
}

std::vector<IonHeap> ion_heaps()
{
    std::vector<IonHeap> result;
    for (const HeapInfo &heap : state().heaps) {
        if (heap.ion_heap_id) {
            const std::string_view name = std::string_view(heap.name).substr(heap.name.find(':') + 1);
            result.push_back({std::string(name), ion_type_of(heap.type), *heap.ion_heap_id, {}});
        }
    }
    if (!result.empty())
        return result;
    // No ION heap: the aliases a program would have found as ION's.
    if (serves("system"))
        result.push_back({"system", ION_HEAP_TYPE_SYSTEM, 0, "system"});
    if (serves("contig"))
        result.push_back({"contig", ION_HEAP_TYPE_DMA, 1, "contig"});
    return result;
}

// Allocates one buffer and returns its fd (FD_CLOEXEC as cloexec says),
// or -errno.
int allocate(bufclient::AllocOptions options, bool cloexec)
{
    auto buffers = state().connection->allocate(options);
    if (!buffers)
        return refused(buffers.error());
    int fd = buffers->front().take_fd().release();
    if (!cloexec && ::fcntl(fd, F_SETFD, 0) < 0) {
        const int error = errno;
        ::close(fd);
        return -error;
    }
    return fd;
}

int dma_heap_alloc(const Device &device, dma_heap_allocation_data &data)
{
    // The kernel's checks, in its order.
    if (data.fd != 0 || (data.fd_flags & ~static_cast<std::uint32_t>(O_ACCMODE | O_CLOEXEC)) != 0 ||
        data.heap_flags != 0)
        return -EINVAL;
    if (data.len == 0)
        return -EINVAL;
    const std::lock_guard lock(state().connection_mutex);
    if (!connected())
        return -EIO;
    const std::string heap = daemon_heap_of_node(device.heap_node);
    if (heap.empty())
        return -ENODEV;
    const int fd = allocate({.heap = heap, .size = data.len, .name = "dma-heap:" + device.heap_node},
                            (data.fd_flags & O_CLOEXEC) != 0);
    if (fd < 0)
        return fd;
    data.fd = static_cast<std::uint32_t>(fd);
    return 0;
}

int ion_alloc(ion_allocation_data &data)
{
    if ((data.flags & ~static_cast<std::uint32_t>(ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC)) != 0 ||
        data.len == 0)
        return -EINVAL;
    const std::lock_guard lock(state().connection_mutex);
    if (!connected())
        return -EIO;
    const std::vector<IonHeap> known = ion_heaps();
    // Highest id first, as ION tried them.
    const IonHeap *chosen = nullptr;
    for (const IonHeap &heap : known) {
        if (heap.id < 32 && (data.heap_id_mask & (1u << heap.id)) != 0 && (!chosen || heap.id > chosen->id))
            chosen = &heap;
    }
    if (!chosen)
        return -ENODEV;
    bufclient::AllocOptions options{.size = data.len, .flags = data.flags, .name = "ion"};
    if (chosen->daemon_heap.empty())
        options.ion_heap_id_mask = data.heap_id_mask;
    else
        options.heap = chosen->daemon_heap;
    // ION's fds are always close-on-exec.
    const int fd = allocate(options, true);
    if (fd < 0)
        return fd;
    data.fd = static_cast<std::uint32_t>(fd);
    return 0;
}

int query_ion_heaps(ion_heap_query &query)
{
    if (query.reserved0 || query.reserved1 || query.reserved2)
        return -EINVAL;
    const std::lock_guard lock(state().connection_mutex);
    if (!connected())
        return -EIO;
    const std::vector<IonHeap> known = ion_heaps();
    if (!query.heaps) {
        query.cnt = static_cast<std::uint32_t>(known.size());
        return 0;
    }
    auto *out = reinterpret_cast<ion_heap_data *>(static_cast<std::uintptr_t>(query.heaps));
    std::uint32_t copied = 0;
    for (const IonHeap &heap : known) {
        if (copied == query.cnt)
            break;
        ion_heap_data entry{};
        std::strncpy(entry.name, heap.name.c_str(), sizeof(entry.name) - 1);
        entry.type = heap.type;
        entry.heap_id = heap.id;
        std::memcpy(&out[copied++], &entry, sizeof(entry));
    }
    query.cnt = copied;
    return 0;
}

template<typename Data, typename Handler>
int with_argument(void *argument, Handler &&handler)
{
    if (!argument)
        return -EFAULT;
    Data data;
    std::memcpy(&data, argument, sizeof(data));
    const int result = handler(data);
    if (result == 0)
        std::memcpy(argument, &data, sizeof(data));
    return result;
}

void lock_for_fork()
{
    state().connection_mutex.lock();
    state().table_mutex.lock();
}

void unlock_after_fork()
{
    state().table_mutex.unlock();
    state().connection_mutex.unlock();
}

void child_after_fork()
{
    state().table_mutex.unlock();
    forget_connection_after_fork();
    state().connection_mutex.unlock();
}

[[gnu::constructor]] void install_fork_handlers()
{
    ::pthread_atfork(lock_for_fork, unlock_after_fork, child_after_fork);
}

} // namespace

std::optional<Device> device_of_path(const char *path)
{
    if (!path)
        return std::nullopt;
    const std::string_view text(path);
    if (text == "/dev/ion")
        return Device{Device::Kind::kIon, {}};
    constexpr std::string_view kDmaHeaps = "/dev/dma_heap/";
    if (!text.starts_with(kDmaHeaps))
        return std::nullopt;
    const std::string_view node = text.substr(kDmaHeaps.size());
    if (node.empty() || node == "." || node == ".." || node.find('/') != std::string_view::npos)
        return std::nullopt;
    return Device{Device::Kind::kDmaHeap, std::string(node)};
}

int open_device(const Device &device, int flags)
{
    {
        const std::lock_guard lock(state().connection_mutex);
        if (!connected())
            return -EAGAIN;
        if (device.kind == Device::Kind::kDmaHeap && daemon_heap_of_node(device.heap_node).empty())
            return -ENOENT;
    }
    const std::string name = device.kind == Device::Kind::kIon ? "ionsvc:/dev/ion" : "ionsvc:/dev/dma_heap/" + device.heap_node;
    const int fd = ::memfd_create(name.c_str(), (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0)
        return -errno;
    State &s = state();
    const std::lock_guard lock(s.table_mutex);
    s.devices[fd] = device;
    s.device_count.store(s.devices.size(), std::memory_order_release);
    return fd;
}

std::optional<Device> device_at(int fd)
{
    State &s = state();
    if (s.device_count.load(std::memory_order_acquire) == 0)
        return std::nullopt;
    const std::lock_guard lock(s.table_mutex);
    if (const auto found = s.devices.find(fd); found != s.devices.end())
        return found->second;
    return std::nullopt;
}

void device_duplicated(int fd, int duplicate)
{
    State &s = state();
    if (s.device_count.load(std::memory_order_acquire) == 0)
        return;
    const std::lock_guard lock(s.table_mutex);
    const auto found = s.devices.find(fd);
    if (found == s.devices.end()) {
        // dup2/dup3 onto a stand-in replaces it.
        s.devices.erase(duplicate);
    } else {
        Device copy = found->second;
        s.devices[duplicate] = std::move(copy);
    }
    s.device_count.store(s.devices.size(), std::memory_order_release);
}

void devices_closed(int first, int last)
{
    State &s = state();
    if (s.device_count.load(std::memory_order_acquire) == 0)
        return;
    const std::lock_guard lock(s.table_mutex);
    std::erase_if(s.devices, [&](const auto &entry) { return entry.first >= first && entry.first <= last; });
    s.device_count.store(s.devices.size(), std::memory_order_release);
}

void device_closed(int fd)
{
    devices_closed(fd, fd);
}

int device_ioctl(const Device &device, unsigned long request, void *argument)
{
    if (device.kind == Device::Kind::kDmaHeap) {
        if (request == DMA_HEAP_IOCTL_ALLOC)
            return with_argument<dma_heap_allocation_data>(
                argument, [&](dma_heap_allocation_data &data) { return dma_heap_alloc(device, data); });
        // The dma-heap core refuses numbers past its table before anything else.
        if (_IOC_TYPE(request) == DMA_HEAP_IOC_MAGIC && _IOC_NR(request) >= 1)
            return -EINVAL;
        return -ENOTTY;
    }
    if (request == ION_IOC_ALLOC)
        return with_argument<ion_allocation_data>(argument, [](ion_allocation_data &data) { return ion_alloc(data); });
    if (request == ION_IOC_HEAP_QUERY)
        return with_argument<ion_heap_query>(argument, [](ion_heap_query &query) { return query_ion_heaps(query); });
    return -ENOTTY;
}

void forget_connection_after_fork()
{
    // Closes the child's copy of the socket and nothing else: the parent's
    // connection goes on. The child connects anew at its first request.
    state().connection.reset();
    state().heaps.clear();
}

} // namespace ionsvc::compat
