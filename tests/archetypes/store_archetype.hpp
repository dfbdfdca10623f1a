// Archetype for the state_store concept (include/xtpm/store/concepts.hpp): the
// smallest type that models it, so the concept is checked against nothing more.
#pragma once

#include <xtpm/store/concepts.hpp>

namespace xtpm::archetypes {

struct store {
    store() = default;
    store(store&&) = default;
    auto operator=(store&&) -> store& = default;
    store(store const&) = delete;  // stores need only be movable
    auto operator=(store const&) -> store& = delete;

    auto load(std::string_view) -> result<std::optional<std::vector<std::byte>>> { return std::nullopt; }
    auto save(std::string_view, wire::bytes_view) -> result<void> { return {}; }
    auto remove(std::string_view) -> result<void> { return {}; }
};

}  // namespace xtpm::archetypes
