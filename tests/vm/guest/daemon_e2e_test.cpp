// SPDX-License-Identifier: MIT
// ionsvcd end to end on a real kernel: the daemon runs as root with
// ion_simple loaded (and, on 6.12, the dma-heap and udmabuf devices), its
// clients run as nobody and get every buffer through it.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_e2e.h"

namespace ionsvc::vmtest {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::uint64_t kSeed = 0x5eed'0001;
constexpr std::uint64_t kOtherSeed = 0x5eed'0002;

class DaemonOnRealHeaps : public DaemonTest
{
};

TEST_F(DaemonOnRealHeaps, ServesEveryHeapThisKernelHas)
{
    const std::string series = kernel_series();
    const auto expected = expectations_for(series);
    ASSERT_TRUE(expected) << "no expectations for kernel series '" << series
                          << "'; add them to expectations_for()";

    const json listing = heaps_json();
    ASSERT_TRUE(listing.is_object() && listing.contains("heaps")) << listing.dump(2);
    std::vector<std::string> names;
    for (const json &heap : listing["heaps"]) {
        const std::string name = heap.value("name", "");
        names.push_back(name);
        // The stable name says which backend serves the heap.
        const std::string backend = name.substr(0, name.find(':'));
        EXPECT_EQ(heap.value("backend", ""), backend) << heap.dump();
    }
    EXPECT_EQ(names, expected->heaps) << listing.dump(2);

    // The built-in aliases lead to ION first, where there is ION.
    const json *system = find_by(listing["heaps"], "name", "ion:ion_system_heap");
    const json *contig = find_by(listing["heaps"], "name", "ion:ion_system_contig_heap");
    ASSERT_NE(system, nullptr);
    ASSERT_NE(contig, nullptr);
    EXPECT_THAT(system->value("aliases", json::array()), ::testing::Contains("system"))
        << system->dump();
    EXPECT_THAT(contig->value("aliases", json::array()), ::testing::Contains("contig"))
        << contig->dump();
}

TEST_F(DaemonOnRealHeaps, LogsWhyEachSourceItDoesNotServeIsMissing)
{
    const auto expected = expectations_for(kernel_series());
    ASSERT_TRUE(expected) << "unknown kernel series " << kernel_series();
    const std::string log = daemon().log();
    for (const std::string &heap : expected->heaps)
        EXPECT_THAT(log, HasSubstr("serving heap '" + heap + "'"));

    // The daemon's own words for a kernel without the devices.
    const std::string no_dma_heap =
        "dma-heap: /dev/dma_heap does not exist (kernel without CONFIG_DMABUF_HEAPS)";
    const std::string no_udmabuf = "udmabuf: /dev/udmabuf: No such file or directory (module "
                                   "udmabuf not loaded, or a kernel without CONFIG_UDMABUF?)";
    if (expected->has_dma_heap)
        EXPECT_THAT(log, Not(HasSubstr("dma-heap: /dev/dma_heap")));
    else
        EXPECT_THAT(log, HasSubstr(no_dma_heap));
    if (expected->has_udmabuf)
        EXPECT_THAT(log, Not(HasSubstr("udmabuf: /dev/udmabuf")));
    else
        EXPECT_THAT(log, HasSubstr(no_udmabuf));
    // ion_simple is loaded on every kernel: nothing to excuse.
    EXPECT_THAT(log, Not(HasSubstr("ion: /dev/ion")));
}

TEST_F(DaemonOnRealHeaps, ItsClientsCannotOpenTheDevicesYetGetBuffersFromThem)
{
    const auto expected = expectations_for(kernel_series());
    ASSERT_TRUE(expected) << "unknown kernel series " << kernel_series();
    // As root: the nodes this kernel has are there.
    EXPECT_TRUE(path_exists("/dev/ion"));
    EXPECT_EQ(path_exists("/dev/dma_heap/system"), expected->has_dma_heap);
    EXPECT_EQ(path_exists("/dev/udmabuf"), expected->has_udmabuf);
    std::vector<std::string> nodes = {"/dev/ion", "/dev/dma_heap/system", "/dev/udmabuf"};
    for (const std::string &heap : list_directory("/dev/dma_heap")) {
        if (heap != "system")
            nodes.push_back("/dev/dma_heap/" + heap);
    }

    // Reports "<node> <flags> <errno>" per attempt, then the heap of the
    // buffer it got from the daemon without naming one.
    ClientProcess client("e2e-nobody", [&](Channel &parent) -> std::string {
        std::string report;
        for (const std::string &node : nodes) {
            for (const int flags : {O_RDWR, O_RDONLY}) {
                const Opened opened = open_file(node, flags);
                report += node + " " + std::to_string(flags) + " " +
                          std::to_string(opened.fd ? 0 : opened.error.value) + "\n";
            }
        }
        auto daemon_client = connect("nobody");
        if (!daemon_client)
            return error_text("connect", daemon_client.error());
        auto buffers = daemon_client->allocate({.size = 64 * KiB});
        if (!buffers)
            return error_text("allocate", buffers.error());
        report += "heap " + buffers->front().heap() + "\n";
        return parent.send(report);
    });
    const Channel::Message report = client.channel().receive();
    EXPECT_TRUE(client.finished());
    ASSERT_EQ(report.error, "");

    std::size_t attempts = 0;
    std::string heap;
    std::istringstream lines{report.text};
    for (std::string line; std::getline(lines, line);) {
        const std::vector<std::string> words = words_of(line);
        if (words.size() == 2 && words[0] == "heap") {
            heap = words[1];
            continue;
        }
        ASSERT_EQ(words.size(), 3u) << line;
        const Errno error{std::stoi(words[2])};
        SCOPED_TRACE(words[0] + (std::stoi(words[1]) == O_RDWR ? " read-write" : " read-only"));
        ++attempts;
        if (path_exists(words[0]))
            EXPECT_THAT(error, AnyOf(Errno{EACCES}, Errno{EPERM}));
        else
            EXPECT_EQ(error, Errno{ENOENT});
    }
    EXPECT_EQ(attempts, 2 * nodes.size());
    // No heap asked for: "system", which is ION's system heap here.
    EXPECT_EQ(heap, "ion:ion_system_heap");
}

TEST_F(DaemonOnRealHeaps, ABufferFromEveryHeapIsSharedBetweenTwoUnprivilegedClients)
{
    // 259 pages: not a power of two.
    constexpr std::size_t kSize = 1 * MiB + 12 * KiB;
    const std::vector<ServedHeap> heaps = served_heaps();
    ASSERT_FALSE(heaps.empty());
    for (const ServedHeap &heap : heaps) {
        SCOPED_TRACE("heap " + heap.name);
        const bool dma_buf = heap.is_dma_buf();
        ChannelPair link = channel_pair();

        // Allocates, fills the buffer through its mapping, passes the fd,
        // and then sees the consumer's pattern in the same memory.
        ClientProcess producer("e2e-producer", [&](Channel &) -> std::string {
            link.second.close();
            auto client = connect("producer");
            if (!client)
                return error_text("connect", client.error());
            auto buffers = client->allocate({.heap = heap.name, .size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            const bufclient::Buffer &buffer = buffers->front();
            if (buffer.heap() != heap.name || buffer.size() != kSize)
                return "got " + std::to_string(buffer.size()) + " bytes from " + buffer.heap();
            if (std::string problem = fill_through_mmap(buffer.fd(), kSize, kSeed, dma_buf);
                !problem.empty())
                return "writing the pattern: " + problem;
            const int lent[] = {buffer.fd()};
            if (std::string problem = link.first.send("buffer", lent); !problem.empty())
                return problem;
            if (std::string problem = link.first.expect("rewritten"); !problem.empty())
                return problem;
            if (std::string problem = check_through_mmap(buffer.fd(), kSize, kOtherSeed, dma_buf);
                !problem.empty())
                return "the consumer's pattern is not in the buffer: " + problem;
            return {};
        });
        // A client of the daemon too, but its buffer comes from the producer.
        ClientProcess consumer("e2e-consumer", [&](Channel &) -> std::string {
            link.first.close();
            auto client = connect("consumer");
            if (!client)
                return error_text("connect", client.error());
            const Channel::Message message = link.second.receive();
            if (!message.error.empty())
                return "waiting for the buffer: " + message.error;
            if (message.fds.size() != 1)
                return "got " + std::to_string(message.fds.size()) + " fds instead of one";
            const int fd = message.fds[0].get();
            if (dma_buf_size(fd) != static_cast<off_t>(kSize))
                return "the fd received has " + std::to_string(dma_buf_size(fd)) + " bytes";
            if (std::string problem = check_through_mmap(fd, kSize, kSeed, dma_buf);
                !problem.empty())
                return "the producer's pattern: " + problem;
            if (std::string problem = fill_through_mmap(fd, kSize, kOtherSeed, dma_buf);
                !problem.empty())
                return "writing over it: " + problem;
            return link.second.send("rewritten");
        });
        link.first.close();
        link.second.close();
        EXPECT_TRUE(producer.finished());
        EXPECT_TRUE(consumer.finished());
    }
}

TEST_F(DaemonOnRealHeaps, ClientsStatsMatchTheirFdinfo)
{
    const std::vector<ServedHeap> heaps = served_heaps();
    ASSERT_FALSE(heaps.empty());
    constexpr int kClients = 3;
    std::vector<std::unique_ptr<ClientProcess>> clients;
    std::vector<std::uint64_t> dma_buf_bytes(kClients), memfd_bytes(kClients);
    std::vector<std::size_t> dma_buf_count(kClients);
    for (int i = 0; i < kClients; ++i) {
        // Every client its own amounts, and a size the daemon rounds up.
        const std::vector<std::uint64_t> sizes = {(i + 1) * 64 * KiB, 5000,
                                                  i * 256 * KiB + 4 * KiB};
        for (const ServedHeap &heap : heaps) {
            for (const std::uint64_t size : sizes) {
                (heap.is_dma_buf() ? dma_buf_bytes[i] : memfd_bytes[i]) += page_rounded(size);
                dma_buf_count[i] += heap.is_dma_buf() ? 1 : 0;
            }
        }
        clients.push_back(std::make_unique<ClientProcess>(
            "e2e-holder-" + std::to_string(i), [&, sizes](Channel &parent) -> std::string {
                auto client = connect("holder");
                if (!client)
                    return error_text("connect", client.error());
                std::vector<bufclient::Buffer> held;
                for (const ServedHeap &heap : heaps) {
                    for (const std::uint64_t size : sizes) {
                        auto buffers = client->allocate({.heap = heap.name, .size = size});
                        if (!buffers)
                            return error_text("allocate from " + heap.name, buffers.error());
                        held.push_back(std::move(buffers->front()));
                    }
                }
                if (std::string problem = parent.send("holding"); !problem.empty())
                    return problem;
                return parent.expect("exit");
            }));
    }
    for (const auto &client : clients)
        ASSERT_EQ(client->channel().expect("holding"), "") << client->comm();

    const json now = stats_json();
    ASSERT_TRUE(now.is_object()) << now.dump();
    for (int i = 0; i < kClients; ++i) {
        const pid_t pid = clients[i]->pid();
        SCOPED_TRACE(clients[i]->comm() + " pid " + std::to_string(pid));
        std::uint64_t counted = 0;
        for (const ServedHeap &heap : heaps) {
            if (heap.is_dma_buf())
                counted += pid_bytes_in(now, pid, heap.name);
        }
        const DmaBufFds held = dma_bufs_of(pid);
        EXPECT_EQ(counted, held.bytes)
            << "its dma-bufs:\n" << held.listing << pid_entry_text(now, pid);
        EXPECT_EQ(held.bytes, dma_buf_bytes[i]) << held.listing;
        EXPECT_EQ(held.count, dma_buf_count[i]) << held.listing;
        // memfds are no dma-bufs: counted by the daemon, not in fdinfo's sum.
        EXPECT_EQ(pid_bytes_in(now, pid, "memfd"), memfd_bytes[i]) << pid_entry_text(now, pid);
    }

    for (const auto &client : clients) {
        EXPECT_EQ(client->channel().send("exit"), "");
        EXPECT_TRUE(client->finished());
    }
}

TEST_F(DaemonOnRealHeaps, AnImportersStatsMatchItsFdinfoAsTheSharersDo)
{
    // The daemon counts a buffer in every client that holds it: a buffer
    // shared through it shows in the importer's stats as in its fdinfo.
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    if (heaps.empty())
        GTEST_SKIP() << "no dma-buf heap on this kernel";
    constexpr std::uint64_t kBufferSize = 192 * KiB;
    ClientProcess sharer("e2e-sharer", [&](Channel &parent) -> std::string {
        auto client = connect("sharer");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> held;
        for (const ServedHeap &heap : heaps) {
            auto buffers = client->allocate({.heap = heap.name, .size = kBufferSize});
            if (!buffers)
                return error_text("allocate from " + heap.name, buffers.error());
            auto token = client->share(buffers->front(), {.uid = kNobodyUid});
            if (!token)
                return error_text("share from " + heap.name, token.error());
            if (std::string problem = parent.send(*token); !problem.empty())
                return problem;
            held.push_back(std::move(buffers->front()));
        }
        return parent.expect("exit");
    });
    ClientProcess importer("e2e-importer", [&](Channel &parent) -> std::string {
        auto client = connect("importer");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> held;
        for (std::size_t i = 0; i < heaps.size(); ++i) {
            const Channel::Message token = parent.receive();
            if (!token.error.empty())
                return "waiting for a token: " + token.error;
            auto buffer = client->import(token.text);
            if (!buffer)
                return error_text("import", buffer.error());
            held.push_back(std::move(*buffer));
        }
        if (std::string problem = parent.send("holding"); !problem.empty())
            return problem;
        return parent.expect("exit");
    });
    for (std::size_t i = 0; i < heaps.size(); ++i) {
        const Channel::Message token = sharer.channel().receive();
        ASSERT_TRUE(token.error.empty()) << token.error;
        ASSERT_EQ(importer.channel().send(token.text), "");
    }
    ASSERT_EQ(importer.channel().expect("holding"), "");

    const json now = stats_json();
    for (const ClientProcess *holder : {&sharer, &importer}) {
        SCOPED_TRACE(holder->comm());
        std::uint64_t counted = 0;
        for (const ServedHeap &heap : heaps)
            counted += pid_bytes_in(now, holder->pid(), heap.name);
        const DmaBufFds held = dma_bufs_of(holder->pid());
        EXPECT_EQ(held.bytes, kBufferSize * heaps.size()) << held.listing;
        EXPECT_EQ(counted, held.bytes) << held.listing << pid_entry_text(now, holder->pid());
    }
    const json *importer_entry = find_by(now["pids"], "pid", importer.pid());
    ASSERT_NE(importer_entry, nullptr);
    EXPECT_EQ(importer_entry->value("shared_bytes", std::uint64_t{0}), kBufferSize * heaps.size());

    EXPECT_EQ(sharer.channel().send("exit"), "");
    EXPECT_EQ(importer.channel().send("exit"), "");
    EXPECT_TRUE(sharer.finished());
    EXPECT_TRUE(importer.finished());
}

TEST_F(DaemonOnRealHeaps, AnIonHeapIdMaskAllocatesFromTheHighestIonHeapItNames)
{
    const json listing = heaps_json();
    ASSERT_TRUE(listing.is_object()) << listing.dump();
    // Mask -> the heap ION itself would take: the highest id in the mask.
    std::vector<std::pair<std::uint32_t, std::string>> cases;
    std::uint32_t all = 0;
    std::string highest;
    for (const Heap &heap : kAllHeaps) {
        const json *served = find_by(listing["heaps"], "name", "ion:" + std::string{heap.name});
        ASSERT_NE(served, nullptr) << heap.name << " is not served";
        ASSERT_EQ((*served)["ion_heap_id"], heap.id) << heap.name;
        all |= mask_of(heap);
        highest = "ion:" + std::string{heap.name};
        cases.emplace_back(mask_of(heap), highest);
        cases.emplace_back(all, highest);
    }

    ClientProcess client("e2e-ion-mask", [&](Channel &) -> std::string {
        auto connection = connect("ion-mask");
        if (!connection)
            return error_text("connect", connection.error());
        for (const auto &[mask, heap] : cases) {
            auto buffers = connection->allocate({.size = 64 * KiB, .ion_heap_id_mask = mask});
            if (!buffers)
                return error_text("allocate with mask " + std::to_string(mask), buffers.error());
            if (buffers->front().heap() != heap)
                return "mask " + std::to_string(mask) + " gave a buffer of " +
                       buffers->front().heap() + ", not " + heap;
            if (auto freed = connection->free(buffers->front()); !freed)
                return error_text("free", freed.error());
        }
        // No ion heap has id 7.
        auto none = connection->allocate({.size = 64 * KiB, .ion_heap_id_mask = 1u << 7});
        if (none)
            return "a mask of no heap gave a buffer of " + none->front().heap();
        if (none.error().code != StatusCode::kNoSuchHeap)
            return error_text("a mask of no heap", none.error()) + " (expected NO_SUCH_HEAP)";
        return {};
    });
    EXPECT_TRUE(client.finished());
}

TEST_F(DaemonOnRealHeaps, FdinfoNamesTheOwnerOfEveryDmaBuf)
{
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    const std::string long_name = "a-buffer-name-longer-than-the-kernel-keeps";
    const std::vector<std::string> names = {"preview-frame", "", long_name};

    // Sends the numbers of its fds, in heap and name order, and lends the
    // first unnamed buffer: any holder's fdinfo names the owner.
    ClientProcess owner("e2e-owner", [&](Channel &parent) -> std::string {
        auto client = connect("owner");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> held;
        std::string numbers;
        for (const ServedHeap &heap : heaps) {
            for (const std::string &name : names) {
                auto buffers =
                    client->allocate({.heap = heap.name, .size = 64 * KiB, .name = name});
                if (!buffers)
                    return error_text("allocate from " + heap.name, buffers.error());
                numbers += std::to_string(buffers->front().fd()) + " ";
                held.push_back(std::move(buffers->front()));
            }
        }
        const int lent[] = {held[1].fd()};
        if (std::string problem = parent.send(numbers, lent); !problem.empty())
            return problem;
        return parent.expect("exit");
    });
    Channel::Message message = owner.channel().receive();
    ASSERT_EQ(message.error, "");
    ASSERT_EQ(message.fds.size(), 1u);
    const std::vector<std::string> fds = words_of(message.text);
    ASSERT_EQ(fds.size(), heaps.size() * names.size()) << message.text;

    const std::string owner_name = owner.comm() + ":" + std::to_string(owner.pid());
    for (std::size_t h = 0; h < heaps.size(); ++h) {
        SCOPED_TRACE("heap " + heaps[h].name);
        const auto name_of = [&](std::size_t n) {
            return fdinfo_field(owner.pid(), std::stoi(fds[h * names.size() + n]), "name");
        };
        EXPECT_EQ(name_of(0), "preview-frame");
        EXPECT_EQ(name_of(1), owner_name);
        // DMA_BUF_NAME_LEN is 32 with the NUL.
        EXPECT_EQ(name_of(2), long_name.substr(0, 31));
    }
    EXPECT_EQ(fdinfo_field(::getpid(), message.fds[0].get(), "name"), owner_name)
        << "in the fdinfo of a process the buffer was passed to";
    message.fds.clear();

    EXPECT_EQ(owner.channel().send("exit"), "");
    EXPECT_TRUE(owner.finished());
}

// ---------------------------------------------------------------- SIGKILL

class DaemonKilledWithSigkill : public DaemonTest
{
};

TEST_F(DaemonKilledWithSigkill, LeavesItsClientsBuffersMappedWritableAndPassable)
{
    constexpr std::size_t kSize = 256 * KiB;
    const std::vector<ServedHeap> heaps = served_heaps();
    ASSERT_FALSE(heaps.empty());
    ChannelPair link = channel_pair();

    // Holds a buffer of every heap, mapped; once the daemon is dead, checks
    // and rewrites each through the old mapping and passes it on.
    ClientProcess holder("e2e-survivor", [&](Channel &parent) -> std::string {
        link.second.close();
        auto client = connect("survivor");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> buffers;
        std::vector<Mapping> mappings;
        for (std::size_t i = 0; i < heaps.size(); ++i) {
            auto allocated = client->allocate({.heap = heaps[i].name, .size = kSize});
            if (!allocated)
                return error_text("allocate from " + heaps[i].name, allocated.error());
            buffers.push_back(std::move(allocated->front()));
            mappings.push_back(Mapping::map(buffers[i].fd(), kSize));
            if (!mappings[i].is_valid())
                return heaps[i].name + ": mmap: " + to_string(mappings[i].error());
            if (std::string problem = fill_mapping(buffers[i].fd(), mappings[i].bytes(),
                                                   kSeed + i, heaps[i].is_dma_buf());
                !problem.empty())
                return heaps[i].name + ": " + problem;
        }
        if (std::string problem = parent.send("holding"); !problem.empty())
            return problem;
        if (std::string problem = parent.expect("daemon killed"); !problem.empty())
            return problem;
        for (std::size_t i = 0; i < heaps.size(); ++i) {
            const int fd = buffers[i].fd();
            const bool dma_buf = heaps[i].is_dma_buf();
            if (std::string problem = check_mapping(fd, mappings[i].bytes(), kSeed + i, dma_buf);
                !problem.empty())
                return heaps[i].name + ": the mapping after the daemon died: " + problem;
            if (std::string problem =
                    fill_mapping(fd, mappings[i].bytes(), kOtherSeed + i, dma_buf);
                !problem.empty())
                return heaps[i].name + ": writing after the daemon died: " + problem;
            const int lent[] = {fd};
            if (std::string problem = link.first.send(std::to_string(i), lent); !problem.empty())
                return problem;
            if (std::string problem = link.first.expect("read"); !problem.empty())
                return heaps[i].name + ": " + problem;
        }
        return link.first.send("done");
    });
    // Never a client: the daemon is dead by the time it gets anything.
    ClientProcess reader("e2e-reader", [&](Channel &) -> std::string {
        link.first.close();
        for (;;) {
            const Channel::Message message = link.second.receive();
            if (!message.error.empty())
                return message.error;
            if (message.text == "done")
                return {};
            const std::size_t i = std::stoul(message.text);
            if (i >= heaps.size() || message.fds.size() != 1)
                return "unexpected message '" + message.text + "'";
            if (std::string problem = check_through_mmap(message.fds[0].get(), kSize,
                                                         kOtherSeed + i, heaps[i].is_dma_buf());
                !problem.empty())
                return heaps[i].name + ": " + problem;
            if (std::string problem = link.second.send("read"); !problem.empty())
                return problem;
        }
    });
    link.first.close();
    link.second.close();
    ASSERT_EQ(holder.channel().expect("holding"), "");

    const pid_t daemon_pid = daemon().pid();
    daemon().kill();
    EXPECT_EQ(::kill(daemon_pid, 0), -1) << "ionsvcd is still there after SIGKILL and waitpid";
    // ION keeps the dead daemon's buffers as orphans of its client.
    EXPECT_TRUE(client_serials(daemon_pid).empty());
    for (const Heap &heap : kAllHeaps) {
        const HeapView view = read_heap_view(heap);
        ASSERT_TRUE(is_parsed(view));
        ASSERT_EQ(view.orphans.size(), 1u) << view.text;
        EXPECT_EQ(view.orphans[0].pid, daemon_pid) << view.text;
        EXPECT_EQ(view.orphans[0].comm, "ionsvcd") << view.text;
        EXPECT_EQ(view.orphans[0].size, kSize) << view.text;
    }

    EXPECT_EQ(holder.channel().send("daemon killed"), "");
    EXPECT_TRUE(holder.finished());
    EXPECT_TRUE(reader.finished());
}

// ---------------------------------------------------------------- debugfs

class IonDebugfsOfTheDaemonsClient : public DaemonTest
{
protected:
    // The daemon's one ION client (its open of /dev/ion) holds exactly
    // what the daemon counts live in each ion heap, and that is expected.
    void expect_agreement(const std::array<std::uint64_t, 3> &expected)
    {
        const pid_t daemon_pid = daemon().pid();
        const std::vector<unsigned> serials = client_serials(daemon_pid);
        ASSERT_EQ(serials.size(), 1u) << "the daemon opens /dev/ion once";
        const ClientView client = read_client_view(daemon_pid, serials[0]);
        ASSERT_TRUE(is_parsed(client));
        const json listing = heaps_json();
        for (std::size_t i = 0; i < kAllHeaps.size(); ++i) {
            const Heap &heap = kAllHeaps[i];
            SCOPED_TRACE(std::string{heap.name});
            const std::uint64_t live = live_bytes_of(listing, "ion:" + std::string{heap.name});
            EXPECT_EQ(client.bytes_in(heap).value_or(0), live) << client.text << listing.dump(2);
            EXPECT_EQ(live, expected[i]);
            // The heap's view says the same of the daemon's row.
            const HeapView view = read_heap_view(heap);
            ASSERT_TRUE(is_parsed(view));
            EXPECT_EQ(view.bytes_of(daemon_pid), live) << view.text;
        }
    }
};

TEST_F(IonDebugfsOfTheDaemonsClient, MatchesTheDaemonsIonHeapTotals)
{
    // Two clients; client c holds (c + 1) * (n + 1) * 64 KiB, n = 0, 1, in
    // every ion heap; on "free" it closes and frees its n = 0 buffers.
    std::vector<std::unique_ptr<ClientProcess>> clients;
    for (int c = 0; c < 2; ++c) {
        clients.push_back(std::make_unique<ClientProcess>(
            "e2e-ion-" + std::to_string(c), [&, c](Channel &parent) -> std::string {
                auto client = connect("ion-user");
                if (!client)
                    return error_text("connect", client.error());
                std::vector<bufclient::Buffer> first, second;
                for (const Heap &heap : kAllHeaps) {
                    for (int n = 0; n < 2; ++n) {
                        auto buffers = client->allocate({.heap = "ion:" + std::string{heap.name},
                                                         .size = (c + 1) * (n + 1) * 64 * KiB});
                        if (!buffers)
                            return error_text("allocate", buffers.error());
                        (n == 0 ? first : second).push_back(std::move(buffers->front()));
                    }
                }
                if (std::string problem = parent.send("holding"); !problem.empty())
                    return problem;
                for (;;) {
                    const Channel::Message order = parent.receive();
                    if (!order.error.empty())
                        return order.error;
                    if (order.text == "exit")
                        return {};
                    // Closed first: a dma-buf freed while an fd of it is
                    // open lives on as an orphan until that fd closes.
                    std::vector<std::uint64_t> ids;
                    for (const bufclient::Buffer &buffer : first)
                        ids.push_back(buffer.id());
                    first.clear();
                    if (auto freed = client->free(ids); !freed)
                        return error_text("free", freed.error());
                    // A round trip: the daemon has seen the Frees.
                    if (auto listed = client->list_heaps(); !listed)
                        return error_text("list_heaps", listed.error());
                    if (std::string problem = parent.send("freed"); !problem.empty())
                        return problem;
                }
            }));
    }
    for (const auto &client : clients)
        ASSERT_EQ(client->channel().expect("holding"), "") << client->comm();
    // (1 + 2) * (1 + 2) * 64 KiB in each heap.
    expect_agreement({576 * KiB, 576 * KiB, 576 * KiB});

    ASSERT_EQ(clients[0]->channel().send("free"), "");
    ASSERT_EQ(clients[0]->channel().expect("freed"), "");
    ASSERT_EQ(clients[1]->channel().send("exit"), "");
    EXPECT_TRUE(clients[1]->finished());
    ASSERT_TRUE(disconnect_seen(clients[1]->pid()));
    // Left: client 0's n = 1 buffers.
    expect_agreement({128 * KiB, 128 * KiB, 128 * KiB});

    ASSERT_EQ(clients[0]->channel().send("exit"), "");
    EXPECT_TRUE(clients[0]->finished());
    ASSERT_TRUE(disconnect_seen(clients[0]->pid()));
    expect_agreement({0, 0, 0});
}

TEST_F(DaemonOnRealHeaps, DmabufsMarksEveryBufferTheDaemonHandedOutWithItsIdAndHolder)
{
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    ClientProcess holder("e2e-dmabufs", [&](Channel &parent) -> std::string {
        auto client = connect("holder");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> held;
        std::string ids;
        for (const ServedHeap &heap : heaps) {
            auto buffers = client->allocate({.heap = heap.name, .size = 64 * KiB});
            if (!buffers)
                return error_text("allocate from " + heap.name, buffers.error());
            ids += std::to_string(buffers->front().id()) + " ";
            held.push_back(std::move(buffers->front()));
        }
        if (std::string problem = parent.send(ids); !problem.empty())
            return problem;
        return parent.expect("exit");
    });
    const Channel::Message ids = holder.channel().receive();
    ASSERT_EQ(ids.error, "");

    // The machine's view, from /proc, with the daemon's list matched by inode.
    const json view = ctl_json({"dmabufs"});
    ASSERT_TRUE(view.is_object()) << view.dump();
    EXPECT_TRUE(view["ionsvc_matched"]);
    std::vector<std::uint64_t> marked;
    for (const json &buffer : view["buffers"]) {
        if (buffer["ionsvc"].is_null())
            continue;
        marked.push_back(buffer["ionsvc"]["id"].get<std::uint64_t>());
        EXPECT_EQ(buffer["ionsvc"]["pid"], holder.pid()) << buffer.dump();
        std::vector<pid_t> holders;
        for (const json &process : buffer["holders"])
            holders.push_back(process["pid"].get<pid_t>());
        EXPECT_THAT(holders, ::testing::Contains(holder.pid())) << buffer.dump();
        EXPECT_THAT(holders, ::testing::Contains(daemon().pid())) << "the daemon keeps a reference to each";
    }
    std::sort(marked.begin(), marked.end());
    std::string marked_text;
    for (const std::uint64_t id : marked)
        marked_text += std::to_string(id) + " ";
    EXPECT_EQ(marked_text, ids.text) << "each buffer handed out, and only those, is marked with its ionsvc id";
    EXPECT_TRUE(holder.channel().send("exit").empty());
    EXPECT_TRUE(holder.finished());
}

} // namespace
} // namespace ionsvc::vmtest
