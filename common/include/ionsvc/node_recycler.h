// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace ionsvc {

// Keeps the nodes of a few erased entries of a node-based container
// (unordered_map, unordered_set) for the next insertions. Containers whose
// entries come and go at the rate of allocations would otherwise cost a
// malloc and a free for each. Nodes move between containers of one type, so
// one recycler can serve them all.
template<typename Container, std::size_t Capacity>
class NodeRecycler
{
public:
    using Key = typename Container::key_type;
    using Node = typename Container::node_type;

    NodeRecycler() { spare_.reserve(Capacity); }

    // Erases the entry at it. A map's value is reset before its node is
    // kept: what the value owned (an fd) goes now, as with a plain erase.
    void erase(Container &container, typename Container::iterator it)
    {
        if (spare_.size() == Capacity) {
            container.erase(it);
            return;
        }
        Node node = container.extract(it);
        if constexpr (requires { node.mapped(); })
            node.mapped() = typename Container::mapped_type{};
        spare_.push_back(std::move(node));
    }

    // Inserts key (with a default value, in a map) if container lacks it.
    typename Container::iterator insert(Container &container, const Key &key)
    {
        if (spare_.empty()) {
            if constexpr (requires { container.try_emplace(key); })
                return container.try_emplace(key).first;
            else
                return container.insert(key).first;
        }
        Node node = std::move(spare_.back());
        spare_.pop_back();
        if constexpr (requires { node.key(); })
            node.key() = key;
        else
            node.value() = key;
        auto result = container.insert(std::move(node));
        if (!result.inserted)
            spare_.push_back(std::move(result.node));
        return result.position;
    }

private:
    std::vector<Node> spare_;
};

} // namespace ionsvc
