// SPDX-License-Identifier: MIT
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

namespace ionsvc {

// The error half of an Expected, to construct one that failed.
template<typename E>
struct Unexpected
{
    E error;
};

template<typename E>
Unexpected(E) -> Unexpected<E>;

// A value or an error, in the manner of C++23's std::expected (which C++20
// lacks). The core uses Expected<T, int> with a negative errno as the error.
template<typename T, typename E>
class [[nodiscard]] Expected
{
public:
    Expected(T value) : state_(std::in_place_index<0>, std::move(value)) {}
    template<typename G>
    Expected(Unexpected<G> failure) : state_(std::in_place_index<1>, std::move(failure.error))
    {
    }

    [[nodiscard]] bool has_value() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T &value() &
    {
        assert(has_value());
        return std::get<0>(state_);
    }
    const T &value() const &
    {
        assert(has_value());
        return std::get<0>(state_);
    }
    T &&value() &&
    {
        assert(has_value());
        return std::get<0>(std::move(state_));
    }

    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }
    T &&operator*() && { return std::move(*this).value(); }

    const E &error() const &
    {
        assert(!has_value());
        return std::get<1>(state_);
    }
    E &&error() &&
    {
        assert(!has_value());
        return std::get<1>(std::move(state_));
    }

private:
    std::variant<T, E> state_;
};

// Expected<void, E>: success carries nothing.
template<typename E>
class [[nodiscard]] Expected<void, E>
{
public:
    Expected() = default;
    template<typename G>
    Expected(Unexpected<G> failure) : error_(std::move(failure.error)), failed_(true)
    {
    }

    [[nodiscard]] bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return has_value(); }

    const E &error() const &
    {
        assert(failed_);
        return error_;
    }

private:
    E error_{};
    bool failed_ = false;
};

} // namespace ionsvc
