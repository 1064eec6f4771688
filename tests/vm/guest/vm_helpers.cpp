// SPDX-License-Identifier: MIT
#include "vm_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <ionsvc/fd_passing.h>

#include "drm_abi.h"

namespace ionsvc::vmtest {

static_assert(std::endian::native == std::endian::little,
              "the pattern is laid out as little-endian words");

// ---------------------------------------------------------------- errno

std::string to_string(Errno error)
{
    if (error.value == 0)
        return "0 (success)";
    const char *name = ::strerrorname_np(error.value);
    const char *description = ::strerrordesc_np(error.value);
    std::string text = name != nullptr ? name : std::to_string(error.value);
    if (description != nullptr)
        text.append(" (").append(description).append(")");
    return text;
}

void PrintTo(Errno error, std::ostream *out)
{
    *out << to_string(error);
}

Errno last_errno()
{
    return Errno{errno};
}

// ---------------------------------------------------------------- /dev/ion

Opened open_file(const std::string &path, int flags)
{
    Opened opened;
    opened.fd.reset(::open(path.c_str(), flags | O_CLOEXEC));
    if (!opened.fd)
        opened.error = last_errno();
    return opened;
}

Opened open_ion()
{
    return open_file("/dev/ion", O_RDWR);
}

Opened open_importer()
{
    return open_file("/dev/ion_test_importer", O_RDWR);
}

AllocationResult allocate(int ion, std::uint64_t len, std::uint32_t heap_id_mask, std::uint32_t flags,
                    std::uint32_t unused)
{
    AllocationResult result;
    result.data = {.len = len, .heap_id_mask = heap_id_mask, .flags = flags, .fd = 0,
                   .unused = unused};
    if (::ioctl(ion, ION_IOC_ALLOC, &result.data) != 0) {
        result.error = last_errno();
        return result;
    }
    result.fd.reset(static_cast<int>(result.data.fd));
    return result;
}

Errno ioctl_errno(int fd, unsigned long request, void *argument)
{
    if (::ioctl(fd, request, argument) != 0)
        return last_errno();
    return kSuccess;
}

Errno heap_query(int ion, ion_heap_query &query)
{
    return ioctl_errno(ion, ION_IOC_HEAP_QUERY, &query);
}

off_t dma_buf_size(int dma_buf)
{
    const off_t size = ::lseek(dma_buf, 0, SEEK_END);
    if (size < 0)
        return -errno;
    return size;
}

Errno dma_buf_sync(int dma_buf, std::uint64_t flags)
{
    struct dma_buf_sync sync = {.flags = flags};
    return ioctl_errno(dma_buf, DMA_BUF_IOCTL_SYNC, &sync);
}

CpuAccess::CpuAccess(int dma_buf, std::uint64_t direction)
    : dma_buf_(dma_buf), direction_(direction),
      started_(dma_buf_sync(dma_buf, DMA_BUF_SYNC_START | direction))
{
}

CpuAccess::~CpuAccess()
{
    if (!finished_ && started_ == kSuccess)
        finish();
}

Errno CpuAccess::finish()
{
    // An mfence: drains write-combining buffers before the device looks.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    finished_ = true;
    return dma_buf_sync(dma_buf_, DMA_BUF_SYNC_END | direction_);
}

::testing::AssertionResult write_pattern_through_mmap(int dma_buf, std::size_t size,
                                                      std::uint64_t seed)
{
    const Mapping mapping = Mapping::map(dma_buf, size);
    if (!mapping.is_valid())
        return ::testing::AssertionFailure() << "mmap: " << to_string(mapping.error());
    CpuAccess access(dma_buf, DMA_BUF_SYNC_WRITE);
    if (access.started() != kSuccess)
        return ::testing::AssertionFailure() << "sync start: " << to_string(access.started());
    fill_pattern(mapping.bytes(), 0, seed);
    const Errno finished = access.finish();
    if (finished != kSuccess)
        return ::testing::AssertionFailure() << "sync end: " << to_string(finished);
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult holds_pattern_through_mmap(int dma_buf, std::size_t size,
                                                      std::uint64_t seed)
{
    const Mapping mapping = Mapping::map(dma_buf, size, 0, PROT_READ);
    if (!mapping.is_valid())
        return ::testing::AssertionFailure() << "mmap: " << to_string(mapping.error());
    CpuAccess access(dma_buf, DMA_BUF_SYNC_READ);
    if (access.started() != kSuccess)
        return ::testing::AssertionFailure() << "sync start: " << to_string(access.started());
    const std::string problem = check_pattern(mapping.bytes(), 0, seed);
    if (!problem.empty())
        return ::testing::AssertionFailure() << problem;
    return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- importer

ImporterResult importer_ioctl(int importer, unsigned long request, ion_test_importer_xfer xfer)
{
    ImporterResult result;
    result.error = ioctl_errno(importer, request, &xfer);
    result.xfer = xfer;
    return result;
}

ImporterResult importer_read(int importer, int dma_buf, std::uint64_t offset,
                             std::span<std::byte> out, std::uint32_t attachments)
{
    return importer_ioctl(importer, ION_TEST_IMPORTER_IOC_READ,
                          {.dmabuf_fd = dma_buf, .attachments = attachments, .offset = offset,
                           .len = out.size(),
                           .user_buf = reinterpret_cast<std::uintptr_t>(out.data())});
}

ImporterResult importer_write(int importer, int dma_buf, std::uint64_t offset,
                              std::span<const std::byte> in, std::uint32_t attachments)
{
    return importer_ioctl(importer, ION_TEST_IMPORTER_IOC_WRITE,
                          {.dmabuf_fd = dma_buf, .attachments = attachments, .offset = offset,
                           .len = in.size(),
                           .user_buf = reinterpret_cast<std::uintptr_t>(in.data())});
}

// ---------------------------------------------------------------- mappings

Mapping Mapping::map(int fd, std::size_t length, off_t offset, int prot)
{
    Mapping mapping;
    void *address = ::mmap(nullptr, length, prot, MAP_SHARED, fd, offset);
    if (address == MAP_FAILED) {
        mapping.error_ = last_errno();
        return mapping;
    }
    mapping.data_ = static_cast<std::byte *>(address);
    mapping.size_ = length;
    return mapping;
}

Mapping::~Mapping()
{
    reset();
}

Mapping::Mapping(Mapping &&other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      error_(other.error_)
{
}

Mapping &Mapping::operator=(Mapping &&other) noexcept
{
    if (this != &other) {
        reset();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        error_ = other.error_;
    }
    return *this;
}

void Mapping::reset()
{
    // munmap over holes punched by the test is fine: it unmaps what is left.
    if (data_ != nullptr)
        ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
}

InaccessiblePage::InaccessiblePage()
{
    void *address = ::mmap(nullptr, kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address != MAP_FAILED)
        address_ = address;
}

InaccessiblePage::~InaccessiblePage()
{
    if (address_ != nullptr)
        ::munmap(address_, kPageSize);
}

// ---------------------------------------------------------------- patterns

namespace {

// splitmix64 of the word index, mixed with the seed.
std::uint64_t pattern_word(std::uint64_t word_index, std::uint64_t seed)
{
    std::uint64_t z = (word_index + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::string hex_byte(std::byte value)
{
    char text[8];
    std::snprintf(text, sizeof text, "0x%02x", std::to_integer<unsigned>(value));
    return text;
}

} // namespace

std::byte pattern_byte(std::uint64_t buffer_offset, std::uint64_t seed)
{
    const std::uint64_t word = pattern_word(buffer_offset / 8, seed);
    return static_cast<std::byte>(word >> (8 * (buffer_offset % 8)));
}

void fill_pattern(std::span<std::byte> out, std::uint64_t buffer_offset, std::uint64_t seed)
{
    std::size_t i = 0;
    for (; i < out.size() && (buffer_offset + i) % 8 != 0; ++i)
        out[i] = pattern_byte(buffer_offset + i, seed);
    for (; i + 8 <= out.size(); i += 8) {
        const std::uint64_t word = pattern_word((buffer_offset + i) / 8, seed);
        std::memcpy(out.data() + i, &word, sizeof word);
    }
    for (; i < out.size(); ++i)
        out[i] = pattern_byte(buffer_offset + i, seed);
}

std::string check_pattern(std::span<const std::byte> in, std::uint64_t buffer_offset,
                          std::uint64_t seed)
{
    std::size_t i = 0;
    std::size_t first_bad = in.size();
    for (; i < in.size() && (buffer_offset + i) % 8 != 0; ++i) {
        if (in[i] != pattern_byte(buffer_offset + i, seed)) {
            first_bad = i;
            break;
        }
    }
    if (first_bad == in.size()) {
        // Word by word; on a mismatch the byte loop below finds the byte.
        for (; i + 8 <= in.size(); i += 8) {
            std::uint64_t word;
            std::memcpy(&word, in.data() + i, sizeof word);
            if (word != pattern_word((buffer_offset + i) / 8, seed))
                break;
        }
        for (; i < in.size(); ++i) {
            if (in[i] != pattern_byte(buffer_offset + i, seed)) {
                first_bad = i;
                break;
            }
        }
    }
    if (first_bad == in.size())
        return {};
    const std::uint64_t at = buffer_offset + first_bad;
    return "byte at buffer offset " + std::to_string(at) + " (page " +
           std::to_string(at / kPageSize) + ") is " + hex_byte(in[first_bad]) + ", expected " +
           hex_byte(pattern_byte(at, seed));
}

std::string check_zeroed(std::span<const std::byte> in)
{
    static const std::array<std::byte, 64 * KiB> zeros{};
    for (std::size_t offset = 0; offset < in.size(); offset += zeros.size()) {
        const std::size_t chunk = std::min(zeros.size(), in.size() - offset);
        if (std::memcmp(in.data() + offset, zeros.data(), chunk) == 0)
            continue;
        for (std::size_t i = offset; i < offset + chunk; ++i) {
            if (in[i] != std::byte{0})
                return "byte " + std::to_string(i) + " of " + std::to_string(in.size()) +
                       " is " + hex_byte(in[i]) + ", expected 0x00";
        }
    }
    return {};
}

// ---------------------------------------------------------------- files

FileText read_text_file(const std::string &path)
{
    FileText result;
    UniqueFD fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd) {
        result.error = last_errno();
        return result;
    }
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            result.error = last_errno();
            return result;
        }
        if (got == 0)
            return result;
        result.text.append(buffer, static_cast<std::size_t>(got));
    }
}

Errno write_text_file(const std::string &path, std::string_view text)
{
    UniqueFD fd{::open(path.c_str(), O_WRONLY | O_CLOEXEC)};
    if (!fd)
        return last_errno();
    // sysfs takes the whole value in one write.
    const ssize_t wrote = ::write(fd.get(), text.data(), text.size());
    if (wrote < 0)
        return last_errno();
    if (static_cast<std::size_t>(wrote) != text.size())
        return Errno{EIO};
    return kSuccess;
}

bool path_exists(const std::string &path)
{
    struct stat status;
    return ::stat(path.c_str(), &status) == 0;
}

std::vector<std::string> list_directory(const std::string &path)
{
    std::vector<std::string> names;
    const std::unique_ptr<DIR, int (*)(DIR *)> directory{::opendir(path.c_str()), ::closedir};
    if (!directory)
        return names;
    while (const dirent *entry = ::readdir(directory.get())) {
        const std::string_view name = entry->d_name;
        if (name != "." && name != "..")
            names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string trim(std::string_view text)
{
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos)
        return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return std::string{text.substr(first, last - first + 1)};
}

std::string this_process_comm()
{
    return trim(read_text_file("/proc/self/comm").text);
}

std::vector<int> open_fds()
{
    std::vector<int> fds;
    const std::unique_ptr<DIR, int (*)(DIR *)> directory{::opendir("/proc/self/fd"), ::closedir};
    if (!directory)
        return fds;
    const int own = ::dirfd(directory.get());
    while (const dirent *entry = ::readdir(directory.get())) {
        int fd = -1;
        const std::string_view name = entry->d_name;
        const auto parsed = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (parsed.ec == std::errc{} && fd != own)
            fds.push_back(fd);
    }
    std::sort(fds.begin(), fds.end());
    return fds;
}

// ---------------------------------------------------------------- debugfs

namespace {

std::vector<std::string_view> split_lines(std::string_view text)
{
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const auto end = text.find('\n');
        lines.push_back(text.substr(0, end));
        if (end == std::string_view::npos)
            break;
        text.remove_prefix(end + 1);
    }
    return lines;
}

std::vector<std::string> split_words(std::string_view line)
{
    std::vector<std::string> words;
    std::size_t position = 0;
    while (position < line.size()) {
        const auto start = line.find_first_not_of(" \t", position);
        if (start == std::string_view::npos)
            break;
        auto end = line.find_first_of(" \t", start);
        if (end == std::string_view::npos)
            end = line.size();
        words.emplace_back(line.substr(start, end - start));
        position = end;
    }
    return words;
}

// The words before the last `trailing` ones, joined: a comm may hold spaces.
std::string leading_words(const std::vector<std::string> &words, std::size_t trailing)
{
    std::string joined;
    for (std::size_t i = 0; i + trailing < words.size(); ++i) {
        if (!joined.empty())
            joined += ' ';
        joined += words[i];
    }
    return joined;
}

template <typename Number>
bool parse_number(std::string_view text, Number &value)
{
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
    return result.ec == std::errc{} && result.ptr == text.data() + text.size();
}

bool parse_pid(std::string_view text, pid_t &pid)
{
    unsigned value = 0;
    if (!parse_number(text, value))
        return false;
    pid = static_cast<pid_t>(value);
    return true;
}

const std::string kSeparator(52, '-');
constexpr std::string_view kOrphanTitle = "orphaned allocations (info is from last known client):";

} // namespace

std::string heap_view_path(const Heap &heap)
{
    return std::string{kDebugfsIon} + "/heaps/" + std::string{heap.name};
}

std::string client_view_path(pid_t pid, unsigned serial)
{
    return std::string{kDebugfsIon} + "/clients/" + std::to_string(pid) + "-" +
           std::to_string(serial);
}

std::uint64_t HeapView::bytes_of(pid_t pid) const
{
    std::uint64_t bytes = 0;
    for (const auto &row : clients) {
        if (row.pid == pid)
            bytes += row.size;
    }
    return bytes;
}

std::vector<std::uint64_t> HeapView::rows_of(pid_t pid) const
{
    std::vector<std::uint64_t> sizes;
    for (const auto &row : clients) {
        if (row.pid == pid)
            sizes.push_back(row.size);
    }
    std::sort(sizes.begin(), sizes.end());
    return sizes;
}

HeapView parse_heap_view(std::string text)
{
    HeapView view;
    view.text = std::move(text);
    const auto fail = [&view](std::string why) {
        view.error = std::move(why);
        view.clients.clear();
        view.orphans.clear();
        return view;
    };

    const auto lines = split_lines(view.text);
    if (lines.empty())
        return fail("the file is empty");
    if (split_words(lines[0]) != std::vector<std::string>{"client", "pid", "size"})
        return fail("line 1 is not the client/pid/size header");

    std::vector<std::size_t> separators;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (lines[i] == kSeparator)
            separators.push_back(i);
    }
    if (separators.size() != 4 || separators[0] != 1 || separators[3] != lines.size() - 1)
        return fail("expected four lines of 52 dashes: after the header, after the clients, "
                    "after the orphans and at the end; found " +
                    std::to_string(separators.size()));

    for (std::size_t i = separators[0] + 1; i < separators[1]; ++i) {
        const auto words = split_words(lines[i]);
        HeapClientRow row;
        if (words.size() < 3 || !parse_pid(words[words.size() - 2], row.pid) ||
            !parse_number(words.back(), row.size))
            return fail("client row on line " + std::to_string(i + 1) + " is not comm pid size");
        row.comm = leading_words(words, 2);
        view.clients.push_back(std::move(row));
    }

    if (separators[1] + 1 >= separators[2] || trim(lines[separators[1] + 1]) != kOrphanTitle)
        return fail("the orphan section does not start with its title");
    for (std::size_t i = separators[1] + 2; i < separators[2]; ++i) {
        const auto words = split_words(lines[i]);
        HeapOrphanRow row;
        if (words.size() < 5 || !parse_pid(words[words.size() - 4], row.pid) ||
            !parse_number(words[words.size() - 3], row.size) ||
            !parse_number(words[words.size() - 2], row.vmaps) ||
            !parse_number(words.back(), row.refs))
            return fail("orphan row on line " + std::to_string(i + 1) +
                        " is not comm pid size vmaps refs");
        row.comm = leading_words(words, 4);
        view.orphans.push_back(std::move(row));
    }

    if (separators[3] - separators[2] != 3)
        return fail("expected exactly two total lines");
    const auto orphaned = split_words(lines[separators[2] + 1]);
    if (orphaned.size() != 3 || orphaned[0] != "total" || orphaned[1] != "orphaned" ||
        !parse_number(orphaned[2], view.total_orphaned))
        return fail("line " + std::to_string(separators[2] + 2) + " is not 'total orphaned N'");
    const auto total = split_words(lines[separators[2] + 2]);
    if (total.size() != 2 || total[0] != "total" || !parse_number(total[1], view.total))
        return fail("line " + std::to_string(separators[2] + 3) + " is not 'total N'");

    view.parsed = true;
    return view;
}

HeapView read_heap_view(const Heap &heap)
{
    const std::string path = heap_view_path(heap);
    FileText file = read_text_file(path);
    if (file.error != kSuccess) {
        HeapView view;
        view.error = "cannot read " + path + ": " + to_string(file.error);
        return view;
    }
    HeapView view = parse_heap_view(std::move(file.text));
    if (!view.parsed)
        view.error = path + ": " + view.error;
    return view;
}

::testing::AssertionResult is_parsed(const HeapView &view)
{
    if (view.parsed)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << view.error << "\n--- content ---\n" << view.text;
}

::testing::AssertionResult is_parsed(const ClientView &view)
{
    if (view.parsed)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << view.error << "\n--- content ---\n" << view.text;
}

std::optional<std::uint64_t> ClientView::bytes_in(const Heap &heap) const
{
    const std::string_view printed = heap.name.substr(0, 16);
    for (const auto &[name, bytes] : rows) {
        if (name == printed)
            return bytes;
    }
    return std::nullopt;
}

ClientView parse_client_view(std::string text)
{
    ClientView view;
    view.text = std::move(text);
    const auto lines = split_lines(view.text);
    const auto split_row = [](std::string_view line, std::string &left, std::string &right) {
        const auto colon = line.rfind(':');
        if (colon == std::string_view::npos)
            return false;
        left = trim(line.substr(0, colon));
        right = trim(line.substr(colon + 1));
        return true;
    };
    std::string left, right;
    if (lines.empty() || !split_row(lines[0], left, right) || left != "heap_name" ||
        right != "size_in_bytes") {
        view.error = "line 1 is not the 'heap_name: size_in_bytes' header";
        return view;
    }
    for (std::size_t i = 1; i < lines.size(); ++i) {
        std::uint64_t bytes = 0;
        if (!split_row(lines[i], left, right) || left.empty() || !parse_number(right, bytes)) {
            view.error = "line " + std::to_string(i + 1) + " is not 'heap: bytes'";
            view.rows.clear();
            return view;
        }
        view.rows.emplace_back(left, bytes);
    }
    view.parsed = true;
    return view;
}

ClientView read_client_view(pid_t pid, unsigned serial)
{
    const std::string path = client_view_path(pid, serial);
    FileText file = read_text_file(path);
    if (file.error != kSuccess) {
        ClientView view;
        view.error = "cannot read " + path + ": " + to_string(file.error);
        return view;
    }
    ClientView view = parse_client_view(std::move(file.text));
    if (!view.parsed)
        view.error = path + ": " + view.error;
    return view;
}

std::vector<unsigned> client_serials(pid_t pid)
{
    const std::string prefix = std::to_string(pid) + "-";
    std::vector<unsigned> serials;
    for (const auto &name : list_directory(std::string{kDebugfsIon} + "/clients")) {
        unsigned serial = 0;
        if (name.starts_with(prefix) &&
            parse_number(std::string_view{name}.substr(prefix.size()), serial))
            serials.push_back(serial);
    }
    std::sort(serials.begin(), serials.end());
    return serials;
}

std::array<std::optional<std::uint64_t>, 3> heap_totals()
{
    std::array<std::optional<std::uint64_t>, 3> totals;
    for (std::size_t i = 0; i < kAllHeaps.size(); ++i) {
        const HeapView view = read_heap_view(kAllHeaps[i]);
        if (view.parsed)
            totals[i] = view.total;
    }
    return totals;
}

// ---------------------------------------------------------------- modules

namespace {

std::string &environment_error_storage()
{
    static std::string error;
    return error;
}

} // namespace

const std::string &environment_error()
{
    return environment_error_storage();
}

void set_environment_error(std::string error)
{
    environment_error_storage() = std::move(error);
}

std::string module_directory()
{
    const char *directory = std::getenv("ION_VM_MODULE_DIR");
    return directory != nullptr ? directory : "";
}

std::string module_file(std::string_view module)
{
    return module_directory() + "/" + std::string{module} + ".ko";
}

Errno load_module(const std::string &path, const std::string &parameters)
{
    UniqueFD fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd)
        return last_errno();
    if (::syscall(SYS_finit_module, fd.get(), parameters.c_str(), 0) != 0)
        return last_errno();
    return kSuccess;
}

Errno unload_module(const std::string &name)
{
    if (::syscall(SYS_delete_module, name.c_str(), O_NONBLOCK) != 0)
        return last_errno();
    return kSuccess;
}

bool module_is_loaded(const std::string &name)
{
    return trim(read_text_file("/sys/module/" + name + "/initstate").text) == "live";
}

std::string module_parameter_path(std::string_view parameter)
{
    return "/sys/module/" + std::string{kIonModule} + "/parameters/" + std::string{parameter};
}

void ensure_standard_modules()
{
    if (!module_is_loaded(kIonModule)) {
        EXPECT_EQ(load_module(module_file(kIonModule), kStandardIonParameters), kSuccess)
            << "loading " << module_file(kIonModule) << " " << kStandardIonParameters;
    }
    if (!module_is_loaded(kImporterModule)) {
        EXPECT_EQ(load_module(module_file(kImporterModule), ""), kSuccess)
            << "loading " << module_file(kImporterModule);
    }
}

void reload_standard_modules()
{
    if (module_is_loaded(kIonModule)) {
        EXPECT_EQ(unload_module(kIonModule), kSuccess)
            << "something the test opened still holds ion_simple after the test";
    }
    ensure_standard_modules();
}

ParameterOverride::ParameterOverride(std::string_view parameter, std::string_view value)
    : path_(module_parameter_path(parameter))
{
    FileText previous = read_text_file(path_);
    if (previous.error != kSuccess) {
        error_ = previous.error;
        return;
    }
    previous_ = trim(previous.text);
    error_ = write_text_file(path_, value);
    restore_ = error_ == kSuccess;
}

ParameterOverride::~ParameterOverride()
{
    if (restore_) {
        EXPECT_EQ(write_text_file(path_, previous_), kSuccess)
            << "restoring " << path_ << " to " << previous_;
    }
}

// ---------------------------------------------------------------- fixtures

void IonVmTest::SetUp()
{
    if (!environment_error().empty())
        GTEST_FAIL() << "the test environment is not ready: " << environment_error();
    // A test that failed half way may have left a module out; put it back
    // so one failure does not become many.
    ensure_standard_modules();
    ASSERT_TRUE(module_is_loaded(kIonModule));
    ASSERT_TRUE(module_is_loaded(kImporterModule));
}

void ModuleStateTest::TearDown()
{
    if (environment_error().empty())
        reload_standard_modules();
}

// ---------------------------------------------------------------- processes


SocketPair socket_pair()
{
    SocketPair pair;
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
        pair.error = last_errno();
        return pair;
    }
    pair.first.reset(fds[0]);
    pair.second.reset(fds[1]);
    return pair;
}

int run_fd_reader()
{
    UniqueFD socket{kReaderSocketFd};
    std::byte request_bytes[sizeof(ReaderRequest)];
    auto received = receive_packet(socket.get(), request_bytes, 1);
    if (received.status != static_cast<ssize_t>(sizeof request_bytes) ||
        received.fds.size() != 1) {
        std::fprintf(stderr, "reader: no request with one fd (status %zd)\n", received.status);
        return 10;
    }
    ReaderRequest request;
    std::memcpy(&request, request_bytes, sizeof request);
    const int dma_buf = received.fds[0].get();

    const Mapping mapping = Mapping::map(dma_buf, request.size, 0, PROT_READ);
    if (!mapping.is_valid()) {
        std::fprintf(stderr, "reader: mmap: %s\n", to_string(mapping.error()).c_str());
        return 11;
    }
    std::string problem;
    {
        CpuAccess access(dma_buf, DMA_BUF_SYNC_READ);
        if (access.started() != kSuccess)
            problem = "DMA_BUF_IOCTL_SYNC start: " + to_string(access.started());
        else
            problem = check_pattern(mapping.bytes(), 0, request.seed);
    }
    const std::byte answer[1] = {problem.empty() ? std::byte{0} : std::byte{1}};
    if (send_packet(socket.get(), answer, {}) != 1)
        return 13;
    if (!problem.empty()) {
        std::fprintf(stderr, "reader: %s\n", problem.c_str());
        return 12;
    }
    return 0;
}

UniqueFD open_vgem_card(std::string &looked_at)
{
    for (const auto &name : list_directory("/dev/dri")) {
        if (!name.starts_with("card"))
            continue;
        auto card = open_file("/dev/dri/" + name, O_RDWR);
        if (card.error != kSuccess) {
            looked_at += " " + name + " (" + to_string(card.error) + ")";
            continue;
        }
        char driver[64] = {};
        drm::Version version{};
        version.name_len = sizeof driver - 1;
        version.name = driver;
        if (::ioctl(card.fd.get(), drm::kIoctlVersion, &version) != 0) {
            looked_at += " " + name + " (DRM_IOCTL_VERSION: " + to_string(last_errno()) + ")";
            continue;
        }
        if (std::string_view{driver} == "vgem")
            return std::move(card.fd);
        looked_at += " " + name + " (" + driver + ")";
    }
    return UniqueFD{};
}

} // namespace ionsvc::vmtest
