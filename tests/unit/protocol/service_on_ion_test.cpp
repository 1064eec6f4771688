// SPDX-License-Identifier: MIT
// The protocol border over dma-buf heaps: a mocked ION driver (this host has
// no /dev/ion; tests/vm runs the real one) whose buffers' reference counts
// the test sets through a mocked /proc/self/fdinfo.
#include <fmt/format.h>

#include <map>

#include <gtest/gtest.h>

#include <ionsvc/protocol.h>

#include "fakes/fake_devices.h"
#include "fakes/fake_ion.h"
#include "fd_count.h"
#include "backends/ion.h"
#include "backends/memfd.h"
#include "protocol/service.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;
using testing::ion_heap;

constexpr std::uint32_t kSystemId = 0;
constexpr std::uint32_t kContigId = 1;
constexpr std::uint32_t kCarveoutId = 2;
constexpr HeapIndex kSystemHeap = 0; // ion:ion_system_heap
constexpr HeapIndex kMemfdHeap = 3;

// The fdinfo text of a dma-buf with references references.
std::string dma_buf_fdinfo(long references)
{
    return fmt::format("pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1234\nsize:\t65536\n"
                       "count:\t{}\nexp_name:\tion_simple\nname:\tframe\n",
                       references);
}

// What the kernel says of a buffer only the daemon still references.
long nobody_else_holds(int)
{
    return 1;
}

class ServiceOnIon : public ::testing::Test
{
protected:
    explicit ServiceOnIon(ServiceLimits limits = {.max_buffer_size = 1 << 24})
        : allocator_(open_backends()), service_(allocator_, limits, syscalls_)
    {
        EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _))
            .WillRepeatedly([this](int, unsigned long, void *arg) {
                auto *request = static_cast<ion_allocation_data *>(arg);
                // One bit per call: the daemon asks one heap at a time.
                if (failing_mask_ & request->heap_id_mask)
                    return failure_;
                request->fd = static_cast<std::uint32_t>(testing::stand_in_fd().release());
                return 0;
            });
        ON_CALL(syscalls_, read_fdinfo(_, _)).WillByDefault([this](int fd, std::span<char> text) {
            ++fdinfo_reads_[fd];
            if (fdinfo_error_)
                return Expected<std::size_t, int>{Unexpected{fdinfo_error_}};
            const auto it = references_.find(fd);
            const std::string info = dma_buf_fdinfo(it == references_.end() ? 1 : it->second);
            const std::size_t length = std::min(info.size(), text.size());
            std::copy_n(info.data(), length, text.data());
            return Expected<std::size_t, int>{length};
        });
        camera_ = connect(100, "camera");
        display_ = connect(200, "display");
    }

    std::vector<std::unique_ptr<Backend>> open_backends()
    {
        testing::accept_names(syscalls_);
        device_ = testing::expect_device(syscalls_, "/dev/ion");
        EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _))
            .WillRepeatedly(testing::answer_heap_query({
                ion_heap("ion_system_heap", ION_HEAP_TYPE_SYSTEM, kSystemId),
                ion_heap("ion_system_contig_heap", ION_HEAP_TYPE_SYSTEM_CONTIG, kContigId),
                ion_heap("ion_carveout_heap", ION_HEAP_TYPE_CARVEOUT, kCarveoutId),
            }));
        std::vector<std::unique_ptr<Backend>> backends;
        auto ion = open_ion_backend(syscalls_);
        EXPECT_TRUE(ion) << ion.error();
        if (ion)
            backends.push_back(std::move(*ion));
        backends.push_back(make_memfd_backend(syscalls_));
        return backends;
    }

    ClientContext connect(pid_t pid, const std::string &comm, uid_t uid = 1000)
    {
        ClientContext client;
        client.id = service_.connect({pid, uid, uid, comm});
        wire::Request request;
        request.mutable_hello()->set_protocol_version(kProtocolVersion);
        EXPECT_EQ(send(client, request).reply.status(), wire::OK);
        return client;
    }

    Response send(ClientContext &client, const wire::Request &request)
    {
        const std::string packet = request.SerializeAsString();
        Response response;
        service_.handle_packet(client, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()},
                               response);
        return response;
    }

    // An allocation whose reply reached the client (delivered) or not.
    Response alloc(ClientContext &client, std::uint32_t mask, const std::string &heap = "",
                   bool delivered = true)
    {
        wire::Request request;
        request.mutable_alloc()->set_size(65536);
        request.mutable_alloc()->set_count(1);
        request.mutable_alloc()->set_heap(heap);
        request.mutable_alloc()->set_ion_heap_id_mask(mask);
        Response response = send(client, request);
        if (delivered && response.reply.status() == wire::OK)
            service_.delivered(client, response);
        return response;
    }

    wire::StatsReply stats(ClientContext &client, std::optional<pid_t> pid = std::nullopt)
    {
        wire::Request request;
        wire::StatsRequest &stats = *request.mutable_stats();
        if (pid)
            stats.set_pid(static_cast<std::uint32_t>(*pid));
        const Response response = send(client, request);
        EXPECT_EQ(response.reply.status(), wire::OK) << response.reply.message();
        return response.reply.stats();
    }

    // The first page of the buffers client may see.
    wire::BuffersReply list_buffers(ClientContext &client)
    {
        wire::Request request;
        request.mutable_buffers();
        const Response response = send(client, request);
        EXPECT_EQ(response.reply.status(), wire::OK) << response.reply.message();
        return response.reply.buffers();
    }

    // The bytes stats gives client in heap, 0 if it lists none there.
    static std::uint64_t bytes_of(const wire::StatsReply &reply, const ClientContext &client,
                                  std::string_view heap)
    {
        for (const auto &entry : reply.clients()) {
            if (entry.client_id() != client.id)
                continue;
            for (const auto &usage : entry.heaps()) {
                if (usage.heap() == heap)
                    return usage.bytes();
            }
        }
        return 0;
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    int device_ = -1;
    std::uint32_t failing_mask_ = 0;
    int failure_ = -ENOMEM; // what the heaps in failing_mask_ answer
    std::map<int, long> references_;
    int fdinfo_error_ = 0;
    std::map<int, int> fdinfo_reads_; // per fd
    Allocator allocator_;
    Service service_;
    ClientContext camera_;
    ClientContext display_;
};

TEST_F(ServiceOnIon, AnIonMaskAllocatesFromItsHighestIdHeap)
{
    const Response response = alloc(camera_, (1u << kSystemId) | (1u << kContigId));
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.reply.alloc().buffers(0).heap(), "ion:ion_system_contig_heap");
}

TEST_F(ServiceOnIon, AnIonMaskFallsBackToTheNextHeapWhenOneFails)
{
    failing_mask_ = 1u << kCarveoutId;
    const Response response = alloc(camera_, 0b111);
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.reply.alloc().buffers(0).heap(), "ion:ion_system_contig_heap");
}

TEST_F(ServiceOnIon, AnIonMaskWhoseHeapsAllFailReportsTheLastOne)
{
    failing_mask_ = 0b111;
    const Response response = alloc(camera_, 0b101);
    EXPECT_EQ(response.reply.status(), wire::OUT_OF_MEMORY);
    EXPECT_THAT(response.reply.message(), HasSubstr("'ion:ion_system_heap'"));
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u);
}

struct DeviceFault
{
    int error;
    wire::StatusCode status;
    const char *text;
};

class ServiceOnFailingIon : public ServiceOnIon, public ::testing::WithParamInterface<DeviceFault>
{
};

TEST_P(ServiceOnFailingIon, AFailingIoctlIsAStatusWithItsTextAndTheDaemonServesOn)
{
    failing_mask_ = 1u << kSystemId;
    failure_ = GetParam().error;
    const std::size_t fds_before = test_support::open_fd_count();
    const Response response = alloc(camera_, 0, "ion:ion_system_heap");
    EXPECT_EQ(response.reply.status(), GetParam().status);
    EXPECT_THAT(response.reply.message(), HasSubstr(GetParam().text));
    EXPECT_THAT(response.reply.message(), HasSubstr("heap 'ion:ion_system_heap'"));
    EXPECT_TRUE(response.fds.empty());
    EXPECT_EQ(test_support::open_fd_count(), fds_before);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u);

    EXPECT_EQ(alloc(camera_, 0, "ion:ion_carveout_heap").reply.status(), wire::OK);
    EXPECT_EQ(alloc(display_, 0, "memfd").reply.status(), wire::OK);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, ServiceOnFailingIon,
    ::testing::Values(DeviceFault{-ENOMEM, wire::OUT_OF_MEMORY, "Cannot allocate memory"},
                      DeviceFault{-EMFILE, wire::RESOURCE_EXHAUSTED, "Too many open files"},
                      // The driver was unbound or the device unplugged.
                      DeviceFault{-ENODEV, wire::INTERNAL, "No such device"},
                      DeviceFault{-EIO, wire::INTERNAL, "Input/output error"},
                      DeviceFault{-EINVAL, wire::INTERNAL, "Invalid argument"}),
    [](const ::testing::TestParamInfo<DeviceFault> &fault) {
        return std::string(strerrorname_np(-fault.param.error));
    });

TEST_F(ServiceOnIon, AnIonMaskWithoutAnyIonHeapNamesTheIonHeapIds)
{
    const Response response = alloc(camera_, 1u << 5);
    EXPECT_EQ(response.reply.status(), wire::NO_SUCH_HEAP);
    EXPECT_THAT(response.reply.message(), HasSubstr("0x20"));
    EXPECT_THAT(response.reply.message(),
                HasSubstr("ion:ion_system_heap (id 0), ion:ion_system_contig_heap (id 1), "
                          "ion:ion_carveout_heap (id 2)"));
}

TEST_F(ServiceOnIon, AHeapNameAndAnIonMaskTogetherAreRefused)
{
    const Response response = alloc(camera_, 1, "memfd");
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("both heap 'memfd' and ion_heap_id_mask 0x1"));
}

TEST_F(ServiceOnIon, ListHeapsGivesEachIonHeapItsId)
{
    wire::Request request;
    request.mutable_list_heaps();
    const Response response = send(camera_, request);
    const auto &heaps = response.reply.list_heaps().heaps();
    ASSERT_EQ(heaps.size(), 4);
    EXPECT_EQ(heaps[0].ion_heap_id(), kSystemId);
    EXPECT_EQ(heaps[2].ion_heap_id(), kCarveoutId);
    EXPECT_TRUE(heaps[2].has_ion_heap_id());
    EXPECT_FALSE(heaps[3].has_ion_heap_id()) << heaps[3].name();
}

TEST_F(ServiceOnIon, StatsLeaveOutABufferTheClientClosedWithoutFree)
{
    const Response held = alloc(camera_, 1u << kSystemId);
    const Response closed = alloc(camera_, 1u << kSystemId);
    ASSERT_EQ(closed.reply.status(), wire::OK);
    references_[held.fds[0]] = 2; // the client's fd and the daemon's

    const wire::StatsReply reply = stats(display_);
    EXPECT_EQ(bytes_of(reply, camera_, "ion:ion_system_heap"), 65536u);
    EXPECT_EQ(reply.heaps(kSystemHeap).total_bytes(), 65536u);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 1u);
}

TEST_F(ServiceOnIon, StatsKeepABufferWhoseReplyIsStillOnItsWay)
{
    alloc(camera_, 1u << kSystemId, "", false);
    EXPECT_EQ(bytes_of(stats(display_), camera_, "ion:ion_system_heap"), 65536u);
}

TEST_F(ServiceOnIon, StatsOfOnePidCountOnlyItsClientsBuffers)
{
    const Response cameras = alloc(camera_, 1u << kSystemId);
    alloc(display_, 1u << kSystemId);
    // Both closed their fds; only the camera's pid is asked about.
    const wire::StatsReply reply = stats(display_, pid_t{100});
    EXPECT_EQ(reply.clients_size(), 1);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 1u) << "the display's is checked later";
    EXPECT_EQ(service_.release_unreferenced(), 1u);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u);
}

TEST_F(ServiceOnIon, StatsOfAClientThatIsNoAdminCountOnlyTheBuffersOfItsOwnUid)
{
    ClientContext stranger = connect(300, "stranger", 2000);
    const int strangers = alloc(stranger, 1u << kSystemId).fds[0];
    const int cameras = alloc(camera_, 1u << kSystemId).fds[0];
    // Both closed their fds; the display (uid 1000) asks.
    stats(display_);
    EXPECT_EQ(fdinfo_reads_[strangers], 0) << "uid 2000's buffers are none of uid 1000's business";
    EXPECT_EQ(fdinfo_reads_[cameras], 1);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 1u);

    ClientContext root = connect(1, "ionsvc-ctl", 0);
    stats(root);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u) << "root sees, and counts, every buffer";
}

TEST_F(ServiceOnIon, AnOrphanOutOfScopeKeepsTheCountLastSeen)
{
    ClientContext stranger = connect(300, "stranger", 2000);
    const int fd = alloc(stranger, 1u << kSystemId).fds[0];
    references_[fd] = 3;
    service_.disconnect(stranger.id);
    references_[fd] = 5;

    stats(display_);
    ASSERT_EQ(service_.books().orphans().size(), 1u);
    EXPECT_EQ(service_.books().orphans().begin()->second.references, 2) << "as at the disconnect";

    ClientContext root = connect(1, "ionsvc-ctl", 0);
    ASSERT_EQ(stats(root).heaps(kSystemHeap).orphaned_size(), 1);
    EXPECT_EQ(service_.books().orphans().begin()->second.references, 4) << "counted afresh for root";
}

TEST_F(ServiceOnIon, HeapsCountTheRequestersOwnBuffersAfresh)
{
    alloc(camera_, 1u << kSystemId); // and closed at once
    wire::Request request;
    request.mutable_list_heaps();
    const Response response = send(display_, request);
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.reply.list_heaps().heaps(kSystemHeap).live_buffers(), 0u);
}

class ServiceOnIonWithASmallBudget : public ServiceOnIon
{
protected:
    ServiceOnIonWithASmallBudget() : ServiceOnIon({.max_buffer_size = 1 << 24, .fresh_count_budget = 2}) {}
};

TEST_F(ServiceOnIonWithASmallBudget, AStatsRequestCountsNoMoreBuffersThanTheBudget)
{
    for (int i = 0; i < 3; ++i)
        alloc(camera_, 1u << kSystemId); // and closed at once
    stats(display_);
    int reads = 0;
    for (const auto &[fd, count] : fdinfo_reads_)
        reads += count;
    EXPECT_EQ(reads, 2);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 1u);
    stats(display_);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u);
}

TEST_F(ServiceOnIon, ABufferHeldElsewhereOutlivesItsClientAsAnOrphan)
{
    const Response response = alloc(camera_, 1u << kSystemId);
    const int fd = response.fds[0];
    references_[fd] = 3; // the daemon's, a process that got the fd, a mapping
    service_.disconnect(camera_.id);

    const wire::StatsReply reply = stats(display_);
    const wire::HeapStats &heap = reply.heaps(kSystemHeap);
    ASSERT_EQ(heap.orphaned_size(), 1);
    EXPECT_EQ(heap.orphaned(0).pid(), 100u);
    EXPECT_EQ(heap.orphaned(0).comm(), "camera");
    EXPECT_EQ(heap.orphaned(0).size(), 65536u);
    EXPECT_EQ(heap.orphaned(0).refcount(), 2);
    EXPECT_EQ(heap.orphaned(0).map_count(), -1);
    EXPECT_EQ(heap.total_bytes(), 65536u);
    EXPECT_EQ(heap.total_buffers(), 1u);
    EXPECT_EQ(stats(display_, pid_t{200}).heaps(kSystemHeap).orphaned_size(), 0)
        << "another pid's orphans are out of its scope";

    references_[fd] = 1;
    const wire::StatsReply after = stats(display_);
    EXPECT_EQ(after.heaps(kSystemHeap).orphaned_size(), 0);
    EXPECT_EQ(after.heaps(kSystemHeap).total_bytes(), 0u);
}

TEST_F(ServiceOnIon, WhileTheDaemonStopsADisconnectDropsEveryBufferWithoutCountingReferences)
{
    const Response response = alloc(camera_, 1u << kSystemId);
    references_[response.fds[0]] = 3; // held elsewhere: an orphan, were the daemon going on
    fdinfo_reads_.clear();
    service_.shut_down();
    service_.disconnect(camera_.id);
    EXPECT_TRUE(fdinfo_reads_.empty()) << "the daemon counted references on its way out";
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 0u);
    EXPECT_TRUE(service_.books().orphans().empty());
}

TEST_F(ServiceOnIon, AFreeThatRacedTheReleaseSucceeds)
{
    const Response response = alloc(camera_, 1u << kSystemId);
    ASSERT_EQ(service_.release_unreferenced(), 1u);

    wire::Request request;
    request.mutable_free()->add_buffer_ids(response.reply.alloc().buffers(0).id());
    const Response freed = send(camera_, request);
    EXPECT_EQ(freed.reply.status(), wire::OK) << freed.reply.message();
    EXPECT_EQ(freed.reply.free().freed(), 1u);
    EXPECT_EQ(send(camera_, request).reply.status(), wire::NOT_FOUND);
}

TEST_F(ServiceOnIon, AFreedBufferHeldElsewhereStaysChargedToItsUidAsAnOrphan)
{
    const Response allocated = alloc(camera_, 1u << kSystemId);
    const BufferId buffer = allocated.reply.alloc().buffers(0).id();
    references_[allocated.fds[0]] = 2; // the client passed its fd on
    wire::Request request;
    request.mutable_free()->add_buffer_ids(buffer);
    ASSERT_EQ(send(camera_, request).reply.status(), wire::OK);

    EXPECT_FALSE(service_.books().holds(camera_.id, buffer));
    EXPECT_EQ(service_.books().client(camera_.id)->usage[kSystemHeap].bytes, 0u);
    ASSERT_EQ(service_.books().orphans().size(), 1u);
    EXPECT_EQ(service_.books().orphans().at(buffer).pid, 100);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).bytes, 65536u);
    EXPECT_EQ(service_.books().uid_usage(1000)->at(kSystemHeap).bytes, 65536u);
    EXPECT_EQ(service_.books().gid_usage(1000)->at(kSystemHeap).bytes, 65536u);

    references_[allocated.fds[0]] = 1;
    EXPECT_EQ(service_.release_unreferenced(), 1u);
    EXPECT_TRUE(service_.books().orphans().empty());
    EXPECT_EQ(service_.books().uid_usage(1000)->at(kSystemHeap).bytes, 0u);
    EXPECT_EQ(service_.books().gid_usage(1000)->at(kSystemHeap).bytes, 0u);
}

TEST_F(ServiceOnIon, PassingTheFdOnAndReconnectingDoesNotEscapeTheUidQuota)
{
    QuotaConfig quota;
    quota.all_heaps.uid = {65536, std::nullopt, "quota.uid"};
    service_.set_quota(quota);
    const Response allocated = alloc(camera_, 1u << kSystemId);
    ASSERT_EQ(allocated.reply.status(), wire::OK);
    references_[allocated.fds[0]] = 2;
    service_.disconnect(camera_.id);

    ClientContext again = connect(101, "camera");
    const Response refused = alloc(again, 1u << kSystemId);
    EXPECT_EQ(refused.reply.status(), wire::QUOTA_EXCEEDED);
    EXPECT_THAT(refused.reply.message(), HasSubstr("uid 1000 holds 65536 bytes in 1 buffers"));

    references_[allocated.fds[0]] = 1;
    EXPECT_EQ(service_.release_unreferenced(), 1u);
    EXPECT_EQ(alloc(again, 1u << kSystemId).reply.status(), wire::OK) << "the orphan died: its room is back";
}

TEST_F(ServiceOnIon, ARefusalFirstRecountsTheProcesssBuffersSoAClosedOrphanGivesItsRoomBack)
{
    QuotaConfig quota;
    quota.all_heaps.uid = {65536, std::nullopt, "quota.uid"};
    service_.set_quota(quota);
    const Response allocated = alloc(camera_, 1u << kSystemId);
    references_[allocated.fds[0]] = 2; // freed while the client still has its fd
    wire::Request request;
    request.mutable_free()->add_buffer_ids(allocated.reply.alloc().buffers(0).id());
    ASSERT_EQ(send(camera_, request).reply.status(), wire::OK);
    EXPECT_EQ(alloc(camera_, 1u << kSystemId).reply.status(), wire::QUOTA_EXCEEDED);

    references_[allocated.fds[0]] = 1; // and then closed it: no release round ran since
    EXPECT_EQ(alloc(camera_, 1u << kSystemId).reply.status(), wire::OK);
    EXPECT_TRUE(service_.books().orphans().empty());
}

TEST_F(ServiceOnIon, AFreedMemfdBufferLeavesTheBooksWhoeverHoldsIt)
{
    const Response allocated = alloc(camera_, 0, "memfd");
    wire::Request request;
    request.mutable_free()->add_buffer_ids(allocated.reply.alloc().buffers(0).id());
    ASSERT_EQ(send(camera_, request).reply.status(), wire::OK);
    EXPECT_TRUE(service_.books().orphans().empty()) << "memfd has no count to watch it by";
    EXPECT_EQ(service_.books().heap_usage(kMemfdHeap).bytes, 0u);
}

TEST_F(ServiceOnIon, AnUnreadableFdinfoKeepsEveryBuffer)
{
    alloc(camera_, 1u << kSystemId);
    fdinfo_error_ = -EMFILE;
    EXPECT_EQ(service_.release_unreferenced(), 0u);
    EXPECT_EQ(bytes_of(stats(display_), camera_, "ion:ion_system_heap"), 65536u);

    fdinfo_error_ = 0;
    EXPECT_EQ(service_.release_unreferenced(), 1u);
}

TEST_F(ServiceOnIon, MemfdBuffersAreNeverCounted)
{
    EXPECT_CALL(syscalls_, read_fdinfo(_, _)).Times(0);
    alloc(camera_, 0, "memfd");
    EXPECT_FALSE(service_.has_watched_buffers());
    EXPECT_EQ(service_.release_unreferenced(), 0u);
    EXPECT_EQ(bytes_of(stats(display_), camera_, "memfd"), 65536u);
    EXPECT_EQ(service_.books().heap_usage(kMemfdHeap).buffers, 1u);
}

// -------------------------------------------------------------------------
// Share and import.

class SharingOnIon : public ServiceOnIon
{
protected:
    // A buffer allocated and delivered to camera, and its id.
    BufferId camera_buffer()
    {
        const Response response = alloc(camera_, 1u << kSystemId);
        EXPECT_EQ(response.reply.status(), wire::OK) << response.reply.message();
        fd_ = response.fds.empty() ? -1 : response.fds[0];
        return response.reply.alloc().buffers(0).id();
    }

    Response share(ClientContext &client, BufferId buffer, std::optional<uid_t> uid = std::nullopt)
    {
        wire::Request request;
        request.mutable_share()->set_buffer_id(buffer);
        if (uid)
            request.mutable_share()->set_uid(*uid);
        return send(client, request);
    }

    // An import whose reply is out (delivered) or is about to be lost.
    Response import(ClientContext &client, const std::string &token, bool delivered = true)
    {
        wire::Request request;
        request.mutable_import_buffer()->set_token(token);
        Response response = send(client, request);
        if (delivered && response.reply.status() == wire::OK)
            service_.delivered(client, response);
        return response;
    }

    const Usage &usage_of(const ClientContext &client)
    {
        return service_.books().client(client.id)->usage[kSystemHeap];
    }

    int fd_ = -1;
};

TEST_F(SharingOnIon, AnImportedBufferCountsInBothClientsAsSharedAndOnceInItsHeap)
{
    const BufferId buffer = camera_buffer();
    const Response shared = share(camera_, buffer);
    ASSERT_EQ(shared.reply.status(), wire::OK) << shared.reply.message();
    ASSERT_EQ(shared.reply.share().token().size(), kShareTokenSize);

    const Response imported = import(display_, shared.reply.share().token());
    ASSERT_EQ(imported.reply.status(), wire::OK) << imported.reply.message();
    EXPECT_EQ(imported.reply.import_buffer().buffer().id(), buffer);
    EXPECT_EQ(imported.reply.import_buffer().buffer().size(), 65536u);
    EXPECT_EQ(imported.reply.import_buffer().buffer().heap(), "ion:ion_system_heap");
    ASSERT_EQ(imported.fds.size(), 1u);
    EXPECT_EQ(imported.fds[0], fd_) << "the daemon's own reference travels";

    EXPECT_EQ(usage_of(camera_).bytes, 65536u);
    EXPECT_EQ(usage_of(camera_).shared_bytes, 65536u);
    EXPECT_EQ(usage_of(display_).bytes, 65536u);
    EXPECT_EQ(usage_of(display_).shared_buffers, 1u);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).bytes, 65536u);
    references_[fd_] = 3;
    const wire::StatsReply reply = stats(display_);
    EXPECT_EQ(reply.heaps(kSystemHeap).total_bytes(), 65536u);
    EXPECT_EQ(reply.clients(0).heaps(0).shared_bytes(), 65536u);
}

TEST_F(SharingOnIon, TheImporterKeepsTheBufferWhenItsSharerFreesIt)
{
    const BufferId buffer = camera_buffer();
    ASSERT_EQ(import(display_, share(camera_, buffer).reply.share().token()).reply.status(), wire::OK);
    ASSERT_EQ(service_.books().remove_buffer(camera_.id, buffer, nobody_else_holds), 0);

    EXPECT_TRUE(service_.books().holds(display_.id, buffer));
    EXPECT_EQ(usage_of(display_).bytes, 65536u);
    EXPECT_EQ(usage_of(display_).shared_bytes, 0u) << "it holds it alone now";
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).buffers, 1u);
}

TEST_F(SharingOnIon, ASharedBufferNobodyHoldsIsReleasedFromEveryHolder)
{
    const BufferId buffer = camera_buffer();
    ASSERT_EQ(import(display_, share(camera_, buffer).reply.share().token()).reply.status(), wire::OK);
    references_[fd_] = 1;
    EXPECT_EQ(service_.release_unreferenced(), 1u);
    EXPECT_FALSE(service_.books().holds(camera_.id, buffer));
    EXPECT_FALSE(service_.books().holds(display_.id, buffer));
    EXPECT_EQ(usage_of(camera_).shared_bytes, 0u);
    EXPECT_EQ(usage_of(display_).bytes, 0u);
    EXPECT_EQ(service_.books().heap_usage(kSystemHeap).bytes, 0u);
}

TEST_F(SharingOnIon, ASharerLeavingWhileTheImporterHoldsTheBufferLeavesNoOrphan)
{
    const BufferId buffer = camera_buffer();
    ASSERT_EQ(import(display_, share(camera_, buffer).reply.share().token()).reply.status(), wire::OK);
    references_[fd_] = 3;
    service_.disconnect(camera_.id);
    EXPECT_TRUE(service_.books().orphans().empty());
    EXPECT_TRUE(service_.books().holds(display_.id, buffer));
    EXPECT_EQ(usage_of(display_).shared_bytes, 0u);
}

TEST_F(SharingOnIon, ATokenDiesWithItsSharersHold)
{
    const BufferId buffer = camera_buffer();
    const std::string token = share(camera_, buffer).reply.share().token();
    ASSERT_EQ(service_.books().remove_buffer(camera_.id, buffer, nobody_else_holds), 0);
    const Response response = import(display_, token);
    EXPECT_EQ(response.reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(response.reply.message(), HasSubstr("no longer held by the client that shared it"));
    EXPECT_TRUE(response.fds.empty());
}

TEST_F(SharingOnIon, OnlyAHolderCanShareABuffer)
{
    const BufferId buffer = camera_buffer();
    const Response response = share(display_, buffer);
    EXPECT_EQ(response.reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(response.reply.message(), HasSubstr(fmt::format("buffer {} is not held by this client", buffer)));
}

TEST_F(SharingOnIon, ATokenForAnotherUidIsPermissionDenied)
{
    ClientContext stranger = connect(300, "stranger", 2000);
    const std::string token = share(camera_, camera_buffer(), uid_t{1000}).reply.share().token();
    const Response refused = import(stranger, token);
    EXPECT_EQ(refused.reply.status(), wire::PERMISSION_DENIED);
    EXPECT_THAT(refused.reply.message(), HasSubstr("for uid 1000, not uid 2000"));
    EXPECT_EQ(import(display_, token).reply.status(), wire::OK) << "its own user may still use it";
}

TEST_F(SharingOnIon, AUsedWrongOrMalformedTokenIsRefused)
{
    const std::string token = share(camera_, camera_buffer()).reply.share().token();
    std::string wrong = token;
    wrong.back() = static_cast<char>(wrong.back() ^ 1);
    const Response guessed = import(display_, wrong);
    EXPECT_EQ(guessed.reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(guessed.reply.message(), HasSubstr("no such share token"));

    ASSERT_EQ(import(display_, token).reply.status(), wire::OK);
    EXPECT_EQ(import(display_, token).reply.status(), wire::NOT_FOUND) << "single use";

    const Response malformed = import(display_, "short");
    EXPECT_EQ(malformed.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(malformed.reply.message(), HasSubstr("24 bytes, not 5"));
}

TEST_F(SharingOnIon, ARevokedTokenIsNotFound)
{
    const std::string token = share(camera_, camera_buffer()).reply.share().token();
    wire::Request request;
    request.mutable_revoke()->set_token(token);
    EXPECT_EQ(send(display_, request).reply.status(), wire::NOT_FOUND) << "only its sharer may revoke it";
    EXPECT_EQ(send(camera_, request).reply.status(), wire::OK);
    EXPECT_EQ(import(display_, token).reply.status(), wire::NOT_FOUND);
}

TEST_F(SharingOnIon, AnImportWhoseBufferDiesInTheRecountBeforeARefusalIsNotFound)
{
    QuotaConfig quota;
    quota.all_heaps.client = {65536, std::nullopt, "quota.client"};
    service_.set_quota(quota);
    const BufferId buffer = camera_buffer(); // and camera closed its fd since
    const std::string token = share(camera_, buffer).reply.share().token();
    ClientContext sibling = connect(100, "camera"); // the same process
    ASSERT_EQ(alloc(sibling, 1u << kSystemId).reply.status(), wire::OK);

    // Over the limit at first; the recount then finds both buffers dead.
    const Response response = import(sibling, token);
    EXPECT_EQ(response.reply.status(), wire::NOT_FOUND) << response.reply.message();
    EXPECT_TRUE(response.fds.empty());
}

TEST_F(SharingOnIon, ImportingABufferAlreadyHeldCountsItOnce)
{
    const BufferId buffer = camera_buffer();
    const Response shared = share(camera_, buffer);
    const Response again = import(camera_, shared.reply.share().token());
    ASSERT_EQ(again.reply.status(), wire::OK) << again.reply.message();
    EXPECT_EQ(again.reply.import_buffer().buffer().id(), buffer);
    EXPECT_EQ(usage_of(camera_).buffers, 1u);
    EXPECT_EQ(usage_of(camera_).shared_buffers, 0u);

    // Its reply lost: the undo keeps the hold it had before.
    const Response lost = import(camera_, share(camera_, buffer).reply.share().token(), false);
    ASSERT_TRUE(lost.held_before);
    service_.undo_allocation(camera_, lost);
    EXPECT_TRUE(service_.books().holds(camera_.id, buffer));
}

TEST_F(SharingOnIon, AnImportWhoseReplyIsLostIsUndone)
{
    const BufferId buffer = camera_buffer();
    const std::string token = share(camera_, buffer).reply.share().token();
    const Response lost = import(display_, token, false);
    ASSERT_EQ(lost.reply.status(), wire::OK);
    service_.undo_allocation(display_, lost);
    EXPECT_FALSE(service_.books().holds(display_.id, buffer));
    EXPECT_EQ(usage_of(camera_).shared_bytes, 0u);

    const Response again = import(display_, token);
    EXPECT_EQ(again.reply.status(), wire::OK) << "the undone import gave its single-use token back";
    EXPECT_EQ(import(display_, token).reply.status(), wire::NOT_FOUND) << "and it is single use still";
}

TEST_F(SharingOnIon, AnUndoneImportGivesNoTokenBackOnceItsSharerLetGo)
{
    const BufferId buffer = camera_buffer();
    const std::string token = share(camera_, buffer).reply.share().token();
    const Response lost = import(display_, token, false);
    ASSERT_EQ(lost.reply.status(), wire::OK);
    ASSERT_EQ(service_.books().remove_buffer(camera_.id, buffer, nobody_else_holds), 0);
    service_.undo_allocation(display_, lost);
    EXPECT_EQ(import(display_, token).reply.status(), wire::NOT_FOUND);
}

// ---------------------------------------------------------------- buffers

TEST_F(ServiceOnIon, ABufferListingNamesTheAllocatorAfterItLeftAndEveryHolderStillConnected)
{
    const Response response = alloc(camera_, 1u << kSystemId);
    const BufferId id = response.reply.alloc().buffers(0).id();
    references_[response.fds[0]] = 3; // the daemon's, the camera's fd, the display's
    wire::Request share;
    share.mutable_share()->set_buffer_id(id);
    const std::string token = send(camera_, share).reply.share().token();
    wire::Request import;
    import.mutable_import_buffer()->set_token(token);
    const Response imported = send(display_, import);
    ASSERT_EQ(imported.reply.status(), wire::OK) << imported.reply.message();
    service_.delivered(display_, imported);

    wire::BuffersReply listing = list_buffers(display_);
    ASSERT_EQ(listing.buffers_size(), 1);
    EXPECT_EQ(listing.buffers(0).holders_size(), 2) << "the camera and the display";
    EXPECT_TRUE(listing.buffers(0).allocator_connected());

    service_.disconnect(camera_.id);
    listing = list_buffers(display_);
    ASSERT_EQ(listing.buffers_size(), 1);
    const wire::BufferEntry &buffer = listing.buffers(0);
    EXPECT_EQ(buffer.id(), id);
    EXPECT_EQ(buffer.heap(), "ion:ion_system_heap");
    EXPECT_EQ(buffer.size(), 65536u);
    EXPECT_EQ(buffer.allocated_by().pid(), 100u);
    EXPECT_EQ(buffer.allocated_by().comm(), "camera");
    EXPECT_FALSE(buffer.allocator_connected());
    ASSERT_EQ(buffer.holders_size(), 1);
    EXPECT_EQ(buffer.holders(0).comm(), "display");
    EXPECT_FALSE(buffer.has_orphan_of());
}

TEST_F(ServiceOnIon, AnOrphanIsListedWithTheLastClientThatHeldIt)
{
    ClientContext named = connect(300, "recorder");
    const Response response = alloc(named, 1u << kSystemId);
    references_[response.fds[0]] = 2; // a process that got the fd keeps it
    service_.disconnect(named.id);

    const wire::BuffersReply listing = list_buffers(display_);
    ASSERT_EQ(listing.buffers_size(), 1);
    const wire::BufferEntry &buffer = listing.buffers(0);
    ASSERT_TRUE(buffer.has_orphan_of());
    EXPECT_EQ(buffer.orphan_of().pid(), 300u);
    EXPECT_EQ(buffer.orphan_of().comm(), "recorder");
    EXPECT_EQ(buffer.holders_size(), 0);

    references_[response.fds[0]] = 1;
    EXPECT_EQ(list_buffers(display_).buffers_size(), 0) << "it died: the listing counts afresh";
}

TEST_F(ServiceOnIon, AClientThatIsNoAdminListsOnlyTheBuffersOfItsOwnUid)
{
    ClientContext stranger = connect(300, "stranger", 2000);
    alloc(stranger, 1u << kSystemId);
    const BufferId cameras = alloc(camera_, 1u << kSystemId).reply.alloc().buffers(0).id();
    references_.clear();
    for (int fd = 0; fd < 1024; ++fd)
        references_[fd] = 2; // every buffer held elsewhere too: none is released

    const wire::BuffersReply mine = list_buffers(display_);
    ASSERT_EQ(mine.buffers_size(), 1) << "uid 2000's buffer is none of uid 1000's business";
    EXPECT_EQ(mine.buffers(0).id(), cameras);
    ClientContext root = connect(1, "ionsvc-ctl", 0);
    EXPECT_EQ(list_buffers(root).buffers_size(), 2) << "root sees every buffer";
}

} // namespace
} // namespace ionsvc
