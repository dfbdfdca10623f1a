// Test helpers for the xenbus handshake machines: typed access to emitted actions and
// value lists as the I/O layer would pass them.
#pragma once

#include <xtpm/proto/xenbus.hpp>

#include <catch2/catch.hpp>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace xtpm::test {

namespace xb = proto::xenbus;

using values = std::vector<std::optional<std::string>>;

inline auto vals(std::initializer_list<std::optional<std::string>> v) -> values { return v; }

template <class T>
auto get(xb::actions const& a, std::size_t i) -> T const& {
    REQUIRE(i < a.size());
    REQUIRE(std::holds_alternative<T>(a[i]));
    return std::get<T>(a[i]);
}

template <class T>
auto count(xb::actions const& a) -> std::size_t {
    return static_cast<std::size_t>(std::ranges::count_if(a, [](auto const& x) { return std::holds_alternative<T>(x); }));
}

inline void check_switch(xb::actions const& a, std::size_t i, std::string const& path, xb::device_state s) {
    auto const& sw = get<xb::switch_state>(a, i);
    CHECK(sw.path == path);
    CHECK(sw.state == s);
}

inline auto paths(std::initializer_list<std::string> p) -> std::vector<std::string> { return p; }

}  // namespace xtpm::test
