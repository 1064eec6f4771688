// SPDX-License-Identifier: MIT
// Recycled nodes of the books' maps: erased values let go at once, and
// later insertions take the nodes kept.
#include <fcntl.h>

#include <cerrno>
#include <unordered_map>
#include <unordered_set>

#include <gtest/gtest.h>

#include <ionsvc/node_recycler.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc {
namespace {

using FdMap = std::unordered_map<int, UniqueFD>;

bool is_open(int fd)
{
    return ::fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

TEST(NodeRecycler, AnErasedEntryLetsGoOfWhatItsValueOwnedAtOnce)
{
    FdMap map;
    NodeRecycler<FdMap, 4> recycler;
    UniqueFD &fd = recycler.insert(map, 1)->second;
    fd = UniqueFD{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
    const int number = fd.get();
    ASSERT_TRUE(is_open(number));

    recycler.erase(map, map.find(1));
    EXPECT_TRUE(map.empty());
    EXPECT_FALSE(is_open(number));
}

TEST(NodeRecycler, ANewEntryTakesTheNodeOfAnErasedOneWithAFreshValue)
{
    FdMap map;
    NodeRecycler<FdMap, 4> recycler;
    recycler.insert(map, 1)->second = UniqueFD{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
    const auto *node = &*map.find(1);
    recycler.erase(map, map.find(1));

    const auto it = recycler.insert(map, 2);
    EXPECT_EQ(&*it, node);
    EXPECT_EQ(it->first, 2);
    EXPECT_FALSE(it->second);
    EXPECT_EQ(map.size(), 1u);
    EXPECT_FALSE(map.contains(1));
}

TEST(NodeRecycler, NodesMoveBetweenMapsOfOneType)
{
    FdMap first;
    FdMap second;
    NodeRecycler<FdMap, 4> recycler;
    recycler.insert(first, 7);
    const auto *node = &*first.find(7);
    recycler.erase(first, first.find(7));

    EXPECT_EQ(&*recycler.insert(second, 8), node);
    EXPECT_TRUE(first.empty());
    EXPECT_TRUE(second.contains(8));
}

TEST(NodeRecycler, InsertingAKeyThatIsThereKeepsItsValueAndTheSpareNode)
{
    std::unordered_map<int, int> map;
    NodeRecycler<std::unordered_map<int, int>, 4> recycler;
    recycler.insert(map, 1)->second = 10;
    recycler.insert(map, 2);
    const auto *spare = &*map.find(2);
    recycler.erase(map, map.find(2));

    const auto existing = recycler.insert(map, 1);
    EXPECT_EQ(existing->second, 10);
    EXPECT_EQ(map.size(), 1u);
    EXPECT_EQ(&*recycler.insert(map, 3), spare);
}

TEST(NodeRecycler, ASetRecyclesItsNodesToo)
{
    std::unordered_set<std::uint64_t> set;
    NodeRecycler<std::unordered_set<std::uint64_t>, 4> recycler;
    const auto *node = &*recycler.insert(set, 41);
    recycler.erase(set, set.find(41));

    const auto it = recycler.insert(set, 42);
    EXPECT_EQ(&*it, node);
    EXPECT_EQ(set, (std::unordered_set<std::uint64_t>{42}));
}

TEST(NodeRecycler, ErasingBeyondItsCapacityStillErases)
{
    std::unordered_map<int, int> map;
    NodeRecycler<std::unordered_map<int, int>, 1> recycler;
    for (int key = 0; key < 3; ++key)
        recycler.insert(map, key);
    for (int key = 0; key < 3; ++key)
        recycler.erase(map, map.find(key));
    EXPECT_TRUE(map.empty());
    for (int key = 10; key < 13; ++key)
        recycler.insert(map, key)->second = key;
    EXPECT_EQ(map, (std::unordered_map<int, int>{{10, 10}, {11, 11}, {12, 12}}));
}

} // namespace
} // namespace ionsvc
