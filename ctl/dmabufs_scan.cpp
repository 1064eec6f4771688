// SPDX-License-Identifier: MIT
#include "dmabufs_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <ionsvc/unique_fd.h>

#include "dmabufs_parse.h"

namespace ionsvc::ctl {
namespace {

// No /proc file worth reading here is larger; a maps file of a process
// with a million mappings is cut rather than read without end.
constexpr std::size_t kMaxFileBytes = 64 * 1024 * 1024;

// The whole file, or nullopt if it cannot be opened or read.
std::optional<std::string> read_file(const std::string &path)
{
    UniqueFD fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd)
        return std::nullopt;
    std::string text;
    char chunk[16384];
    while (text.size() < kMaxFileBytes) {
        const ssize_t got = ::read(fd.get(), chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return std::nullopt;
        if (got == 0)
            break;
        text.append(chunk, static_cast<std::size_t>(got));
    }
    return text;
}

std::optional<std::string> read_link(const std::string &path)
{
    char target[4096];
    const ssize_t length = ::readlink(path.c_str(), target, sizeof target);
    if (length < 0)
        return std::nullopt;
    return std::string(target, static_cast<std::size_t>(length));
}

struct DirCloser
{
    void operator()(DIR *dir) const { ::closedir(dir); }
};

// The entry names of a directory (without . and ..), or -errno.
Expected<std::vector<std::string>, int> list_directory(const std::string &path)
{
    std::unique_ptr<DIR, DirCloser> dir(::opendir(path.c_str()));
    if (!dir)
        return Unexpected(-errno);
    std::vector<std::string> names;
    while (const dirent *entry = ::readdir(dir.get())) {
        const std::string_view name = entry->d_name;
        if (name != "." && name != "..")
            names.emplace_back(name);
    }
    return names;
}

std::optional<std::uint32_t> pid_of(const std::string &name)
{
    if (name.empty() || name.size() > 10 || !std::all_of(name.begin(), name.end(), [](char c) {
            return c >= '0' && c <= '9';
        }))
        return std::nullopt;
    const unsigned long long value = std::stoull(name);
    if (value == 0 || value > UINT32_MAX)
        return std::nullopt;
    return static_cast<std::uint32_t>(value);
}

// A dma-buf mapping of one process, kept until every fd has been seen.
struct Mapping
{
    std::uint32_t pid = 0;
    MapsDmabuf map;
};

class Scanner
{
public:
    explicit Scanner(const DmabufScanOptions &options) : options_(options) {}

    Expected<DmabufScan, std::string> run();

private:
    std::string process_path(std::uint32_t pid, const std::string &leaf) const
    {
        return options_.proc_root + "/" + std::to_string(pid) + "/" + leaf;
    }
    void scan_process(std::uint32_t pid);
    void scan_fds(std::uint32_t pid);
    void add_mappings();
    void add_bufinfo();
    void size_from_map_files();
    DmabufHolder &holder(Dmabuf &buffer, std::uint32_t pid);
    DmabufScan model();

    const DmabufScanOptions &options_;
    std::map<std::uint32_t, std::string> comms_;
    std::map<std::uint64_t, Dmabuf> buffers_;
    std::vector<Mapping> mappings_;
    // For each buffer known only from maps: a mapping to stat.
    std::map<std::uint64_t, Mapping> map_only_;
    bool bufinfo_read_ = false;
};

Expected<DmabufScan, std::string> Scanner::run()
{
    auto names = list_directory(options_.proc_root);
    if (!names)
        return Unexpected(options_.proc_root + ": " + std::strerror(-names.error()));
    std::vector<std::uint32_t> pids;
    for (const std::string &name : *names)
        if (const auto pid = pid_of(name))
            pids.push_back(*pid);
    std::sort(pids.begin(), pids.end());
    for (const std::uint32_t pid : pids)
        scan_process(pid);
    add_mappings();
    add_bufinfo();
    size_from_map_files();
    return model();
}

void Scanner::scan_process(std::uint32_t pid)
{
    auto comm = read_file(process_path(pid, "comm"));
    if (!comm)
        return; // vanished
    if (comm->ends_with('\n'))
        comm->pop_back();
    comms_[pid] = std::move(*comm);
    scan_fds(pid);
    if (const auto maps = read_file(process_path(pid, "maps"))) {
        std::string_view text = *maps;
        while (!text.empty()) {
            const std::size_t newline = std::min(text.find('\n'), text.size());
            if (auto map = parse_dmabuf_maps_line(text.substr(0, newline)))
                mappings_.push_back({pid, std::move(*map)});
            text.remove_prefix(std::min(newline + 1, text.size()));
        }
    }
}

void Scanner::scan_fds(std::uint32_t pid)
{
    auto fds = list_directory(process_path(pid, "fd"));
    if (!fds)
        return; // another user's, or gone
    for (const std::string &fd : *fds) {
        const auto target = read_link(process_path(pid, "fd/" + fd));
        if (!target || !is_dmabuf_link(*target))
            continue;
        const auto info = read_file(process_path(pid, "fdinfo/" + fd));
        const auto parsed = info ? parse_dmabuf_fdinfo(*info) : std::nullopt;
        if (!parsed)
            continue; // closed since, or a file that only looks like one
        Dmabuf &buffer = buffers_[parsed->inode];
        if (buffer.inode == 0) {
            buffer.inode = parsed->inode;
            buffer.size = parsed->size;
            buffer.size_source = SizeSource::kFdinfo;
            buffer.exporter = parsed->exporter;
            buffer.name = parsed->name;
        }
        holder(buffer, pid).fd_refs += 1;
    }
}

void Scanner::add_mappings()
{
    // Every dma-buf lives on the one dmabuffs super block: a device seen
    // with a buffer known by its fd is the dma-bufs' device.
    std::set<std::string> devices;
    for (const Mapping &mapping : mappings_)
        if (const auto known = buffers_.find(mapping.map.inode); known != buffers_.end())
            if (known->second.size_source == SizeSource::kFdinfo)
                devices.insert(mapping.map.device);

    for (const Mapping &mapping : mappings_) {
        const bool is_dmabuf = devices.empty() ? is_anonymous_device(mapping.map.device)
                                               : devices.contains(mapping.map.device);
        if (!is_dmabuf)
            continue;
        Dmabuf &buffer = buffers_[mapping.map.inode];
        if (buffer.inode == 0) {
            buffer.inode = mapping.map.inode;
            buffer.name = mapping.map.name;
            map_only_.emplace(buffer.inode, mapping);
        }
        if (buffer.size_source == SizeSource::kMaps)
            buffer.size = std::max(buffer.size, mapping.map.offset + (mapping.map.end - mapping.map.start));
        holder(buffer, mapping.pid).map_refs += 1;
    }
}

void Scanner::add_bufinfo()
{
    const auto text = read_file(options_.bufinfo_path);
    if (!text)
        return;
    bufinfo_read_ = true;
    for (DmabufRecord &entry : parse_bufinfo(*text)) {
        Dmabuf &buffer = buffers_[entry.inode];
        if (buffer.inode == 0) {
            buffer.inode = entry.inode;
            buffer.kernel_only = true;
        } else if (buffer.size_source == SizeSource::kFdinfo) {
            continue; // fdinfo said it all
        }
        buffer.size = entry.size;
        buffer.size_source = SizeSource::kBufinfo;
        buffer.exporter = std::move(entry.exporter);
        buffer.name = std::move(entry.name);
    }
}

void Scanner::size_from_map_files()
{
    for (const auto &[inode, mapping] : map_only_) {
        Dmabuf &buffer = buffers_[inode];
        if (buffer.size_source != SizeSource::kMaps)
            continue;
        // map_files names ranges "%lx-%lx", unpadded, unlike maps.
        char range[64];
        std::snprintf(range, sizeof range, "%" PRIx64 "-%" PRIx64, mapping.map.start, mapping.map.end);
        struct stat status{};
        if (::stat(process_path(mapping.pid, std::string("map_files/") + range).c_str(), &status) == 0
            && status.st_size > 0) {
            buffer.size = static_cast<std::uint64_t>(status.st_size);
            buffer.size_source = SizeSource::kMapFiles;
        }
    }
}

DmabufHolder &Scanner::holder(Dmabuf &buffer, std::uint32_t pid)
{
    auto &holders = buffer.holders;
    auto found = std::lower_bound(holders.begin(), holders.end(), pid,
                                  [](const DmabufHolder &holder, std::uint32_t value) { return holder.pid < value; });
    if (found == holders.end() || found->pid != pid)
        found = holders.insert(found, DmabufHolder{pid, 0, 0});
    return *found;
}

DmabufScan Scanner::model()
{
    DmabufScan scan;
    scan.bufinfo_read = bufinfo_read_;
    std::set<std::uint32_t> holding;
    for (auto &[inode, buffer] : buffers_) {
        for (const DmabufHolder &holder : buffer.holders)
            holding.insert(holder.pid);
        scan.buffers.push_back(std::move(buffer));
    }
    for (const std::uint32_t pid : holding)
        scan.processes.push_back({pid, comms_[pid]});
    return scan;
}

} // namespace

Expected<DmabufScan, std::string> scan_dmabufs(const DmabufScanOptions &options)
{
    return Scanner(options).run();
}

} // namespace ionsvc::ctl
