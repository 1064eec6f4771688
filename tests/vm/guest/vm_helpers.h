// SPDX-License-Identifier: MIT
// Shared pieces of the in-VM tests of ion_simple: the heaps, the ioctls,
// module loading, debugfs parsing, mappings, patterns and child processes.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <ionsvc/unique_fd.h>

#include "child_process.h"
#include "fd_count.h"

#include "kernel/uapi/ion.h"
#include "tests/vm/importer/ion_test_importer.h"

namespace ionsvc::vmtest {

// x86-64 only; the environment checks it before any test runs.
inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::size_t KiB = 1024;
inline constexpr std::size_t MiB = 1024 * KiB;

// ---------------------------------------------------------------- errno

// An errno value that gtest prints by name ("ENOMEM (Cannot allocate
// memory)"), so a failed EXPECT_EQ says what came back.
struct Errno
{
    int value = 0;
    friend bool operator==(Errno, Errno) = default;
};
inline constexpr Errno kSuccess{0};
void PrintTo(Errno error, std::ostream *out);
std::string to_string(Errno error);
// errno as left by the call that just failed.
Errno last_errno();

// ---------------------------------------------------------------- heaps

struct Heap
{
    unsigned id;
    std::string_view name;
    unsigned type;
    bool contiguous; // one scatterlist entry, one DMA segment
};

inline constexpr Heap kSystemHeap{0, "ion_system_heap", ION_HEAP_TYPE_SYSTEM, false};
inline constexpr Heap kContigHeap{1, "ion_system_contig_heap", ION_HEAP_TYPE_SYSTEM_CONTIG, true};
inline constexpr Heap kCarveoutHeap{2, "ion_carveout_heap", ION_HEAP_TYPE_CARVEOUT, true};
inline constexpr std::array<Heap, 3> kAllHeaps{kSystemHeap, kContigHeap, kCarveoutHeap};

constexpr std::uint32_t mask_of(const Heap &heap) { return 1u << heap.id; }
constexpr std::uint64_t page_rounded(std::uint64_t len)
{
    return (len + kPageSize - 1) / kPageSize * kPageSize;
}

// The standard state every test starts from and returns to.
inline constexpr const char *kIonModule = "ion_simple";
inline constexpr const char *kImporterModule = "ion_test_importer";
inline constexpr const char *kStandardIonParameters = "carveout_size=32M";
inline constexpr std::size_t kStandardCarveoutSize = 32 * MiB;

// ---------------------------------------------------------------- /dev/ion

struct Opened
{
    Errno error;
    UniqueFD fd;
};
// Opens /dev/ion: a new ION client.
Opened open_ion();
Opened open_importer();
// Opens path with flags; errno kept in the result.
Opened open_file(const std::string &path, int flags);

struct AllocationResult
{
    Errno error;
    UniqueFD fd;                    // the dma-buf, on success
    ion_allocation_data data{};     // as the kernel wrote it back
};
AllocationResult allocate(int ion, std::uint64_t len, std::uint32_t heap_id_mask,
                    std::uint32_t flags = 0, std::uint32_t unused = 0);

Errno heap_query(int ion, ion_heap_query &query);

// ioctl(2) as an Errno: kSuccess, or errno saved right after the call.
Errno ioctl_errno(int fd, unsigned long request, void *argument);

// The size the dma-buf reports, or -errno.
off_t dma_buf_size(int dma_buf);

// DMA_BUF_IOCTL_SYNC with the given flags.
Errno dma_buf_sync(int dma_buf, std::uint64_t flags);

// Brackets CPU writes to a mapping: SYNC_START, the caller writes, then
// finish() fences the stores (write-combined mappings included) and ends.
class CpuAccess
{
public:
    CpuAccess(int dma_buf, std::uint64_t direction);
    ~CpuAccess();
    CpuAccess(const CpuAccess &) = delete;
    CpuAccess &operator=(const CpuAccess &) = delete;
    Errno started() const { return started_; }
    Errno finish();

private:
    int dma_buf_;
    std::uint64_t direction_;
    Errno started_;
    bool finished_ = false;
};

// Fills the whole dma-buf with the pattern of seed through a mapping of
// its own, inside DMA_BUF_IOCTL_SYNC; checks it back the same way.
::testing::AssertionResult write_pattern_through_mmap(int dma_buf, std::size_t size,
                                                      std::uint64_t seed);
::testing::AssertionResult holds_pattern_through_mmap(int dma_buf, std::size_t size,
                                                      std::uint64_t seed);

// ---------------------------------------------------------------- importer

struct ImporterResult
{
    Errno error;
    ion_test_importer_xfer xfer{};
};
// Reads [offset, offset + out.size()) of the dma-buf through the importer.
ImporterResult importer_read(int importer, int dma_buf, std::uint64_t offset,
                             std::span<std::byte> out, std::uint32_t attachments = 1);
ImporterResult importer_write(int importer, int dma_buf, std::uint64_t offset,
                              std::span<const std::byte> in, std::uint32_t attachments = 1);
ImporterResult importer_ioctl(int importer, unsigned long request, ion_test_importer_xfer xfer);

// ---------------------------------------------------------------- mappings

// One mmap'd range, unmapped on destruction.
class Mapping
{
public:
    Mapping() = default;
    static Mapping map(int fd, std::size_t length, off_t offset = 0,
                       int prot = PROT_READ | PROT_WRITE);
    ~Mapping();
    Mapping(Mapping &&other) noexcept;
    Mapping &operator=(Mapping &&other) noexcept;
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;

    bool is_valid() const { return data_ != nullptr; }
    Errno error() const { return error_; }
    std::byte *data() const { return data_; }
    std::size_t size() const { return size_; }
    std::span<std::byte> bytes() const { return {data_, size_}; }
    void reset();


private:
    std::byte *data_ = nullptr;
    std::size_t size_ = 0;
    Errno error_;
};

// An address no process may touch: one PROT_NONE page, for EFAULT tests.
class InaccessiblePage
{
public:
    InaccessiblePage();
    ~InaccessiblePage();
    InaccessiblePage(const InaccessiblePage &) = delete;
    InaccessiblePage &operator=(const InaccessiblePage &) = delete;
    void *address() const { return address_; }

private:
    void *address_ = nullptr;
};

// ---------------------------------------------------------------- patterns

// A byte pattern that depends on the position in the buffer, so a page
// showing up at the wrong offset is caught, and on a seed, so a stale
// buffer is caught.
std::byte pattern_byte(std::uint64_t buffer_offset, std::uint64_t seed);
void fill_pattern(std::span<std::byte> out, std::uint64_t buffer_offset, std::uint64_t seed);
// Empty if in holds the pattern, else where and what differs.
std::string check_pattern(std::span<const std::byte> in, std::uint64_t buffer_offset,
                          std::uint64_t seed);
// Empty if every byte is zero, else the first one that is not.
std::string check_zeroed(std::span<const std::byte> in);

// ---------------------------------------------------------------- files

struct FileText
{
    Errno error;
    std::string text;
};
FileText read_text_file(const std::string &path);
Errno write_text_file(const std::string &path, std::string_view text);
bool path_exists(const std::string &path);
// Names in a directory (without . and ..); empty if it cannot be read.
std::vector<std::string> list_directory(const std::string &path);

// The /dev/dri/card* whose driver calls itself "vgem", opened read-write;
// an invalid fd if there is none, with what it looked at in looked_at.
UniqueFD open_vgem_card(std::string &looked_at);
std::string trim(std::string_view text);
std::string this_process_comm();
// Open descriptors of this process, ascending, from /proc/self/fd (less
// the one used to read it).
std::vector<int> open_fds();
using test_support::open_fd_count;

// ---------------------------------------------------------------- debugfs

inline constexpr const char *kDebugfsIon = "/sys/kernel/debug/ion";
std::string heap_view_path(const Heap &heap);
std::string client_view_path(pid_t pid, unsigned serial);

struct HeapClientRow
{
    std::string comm;
    pid_t pid = 0;
    std::uint64_t size = 0;
};
struct HeapOrphanRow
{
    std::string comm;
    pid_t pid = 0;
    std::uint64_t size = 0;
    long vmaps = 0;
    long refs = 0;
};
// /sys/kernel/debug/ion/heaps/<name>, parsed. On any mismatch with the
// expected layout, parsed is false and error says where; text is the raw
// content for failure messages.
struct HeapView
{
    bool parsed = false;
    std::string error;
    std::string text;
    std::vector<HeapClientRow> clients;
    std::vector<HeapOrphanRow> orphans;
    std::uint64_t total_orphaned = 0;
    std::uint64_t total = 0;

    // Sum of the client rows of pid (one per client of that process).
    std::uint64_t bytes_of(pid_t pid) const;
    std::vector<std::uint64_t> rows_of(pid_t pid) const;
};
HeapView parse_heap_view(std::string text);
HeapView read_heap_view(const Heap &heap);

// /sys/kernel/debug/ion/clients/<pid>-<serial>, parsed. Heap names are
// printed with "%16.16s", so long names appear cut to 16 characters;
// bytes_in() cuts the same way.
struct ClientView
{
    bool parsed = false;
    std::string error;
    std::string text;
    std::vector<std::pair<std::string, std::uint64_t>> rows;

    std::optional<std::uint64_t> bytes_in(const Heap &heap) const;
};
// For ASSERT_TRUE: on failure, the parse error and the whole file.
::testing::AssertionResult is_parsed(const HeapView &view);

ClientView parse_client_view(std::string text);
ClientView read_client_view(pid_t pid, unsigned serial);
::testing::AssertionResult is_parsed(const ClientView &view);
// Serials of the live clients of pid, ascending.
std::vector<unsigned> client_serials(pid_t pid);

// "total " of every heap, in kAllHeaps order; nullopt for a view that did
// not parse.
std::array<std::optional<std::uint64_t>, 3> heap_totals();

// ---------------------------------------------------------------- modules

std::string module_directory();
std::string module_file(std::string_view module);
Errno load_module(const std::string &path, const std::string &parameters);
// delete_module(name, O_NONBLOCK): EWOULDBLOCK while anything holds it.
Errno unload_module(const std::string &name);
bool module_is_loaded(const std::string &name);
std::string module_parameter_path(std::string_view parameter);

// Loads whatever of the standard state is missing.
void ensure_standard_modules();
// Unloads ion_simple if it is loaded and loads it with the standard
// parameters, and loads the importer if it is missing.
void reload_standard_modules();

// Set by the global environment: empty when both modules loaded.
const std::string &environment_error();
void set_environment_error(std::string error);

// A global environment whose preparation can fail: what prepare() returns
// becomes environment_error(), which every test checks first, and fails
// the set-up.
class CheckedEnvironment : public ::testing::Environment
{
public:
    void SetUp() final
    {
        set_environment_error(prepare());
        if (!environment_error().empty())
            ADD_FAILURE() << environment_error();
    }

protected:
    // "" or why the tests cannot run.
    virtual std::string prepare() = 0;
};

// Writes a writable module parameter and restores what it read back on
// destruction.
class ParameterOverride
{
public:
    ParameterOverride(std::string_view parameter, std::string_view value);
    ~ParameterOverride();
    ParameterOverride(const ParameterOverride &) = delete;
    ParameterOverride &operator=(const ParameterOverride &) = delete;
    Errno error() const { return error_; }

private:
    std::string path_;
    std::string previous_;
    Errno error_;
    bool restore_ = false;
};

// ---------------------------------------------------------------- fixtures

// Every test: the environment loaded the modules, and they are loaded now.
class IonVmTest : public ::testing::Test
{
protected:
    void SetUp() override;
};

// Tests that unload, reload or reconfigure ion_simple: the standard state
// is restored after the test body has closed everything it opened.
class ModuleStateTest : public IonVmTest
{
protected:
    void TearDown() override;
};

// ---------------------------------------------------------------- processes

// A forked child that runs body and _exits with its return value. Bodies
// must not use gtest assertions; they report through the exit code.
using test_support::ChildProcess;

struct SocketPair
{
    Errno error;
    UniqueFD first;
    UniqueFD second;
};
// SOCK_SEQPACKET, close-on-exec.
SocketPair socket_pair();

// Hidden command line of the same executable run as an unrelated reader:
// it receives a dma-buf on fd 3 together with a ReaderRequest, checks the
// pattern through its own mapping and answers with one byte (0 = good).
inline constexpr const char *kReaderOption = "--ion-vm-fd-reader";
inline constexpr int kReaderSocketFd = 3;
struct ReaderRequest
{
    std::uint64_t size;
    std::uint64_t seed;
};
int run_fd_reader();

} // namespace ionsvc::vmtest
