// Archetypes: the smallest types that model each concept, so the concepts'
// requirements are checked against something that has nothing else.
#pragma once

#include <xtpm/device/concepts.hpp>
#include <xtpm/source/concepts.hpp>
#include <xtpm/stage/concepts.hpp>

namespace xtpm::archetypes {

struct device {
    auto execute(wire::command_view, wire::bytes_span) -> result<wire::response_view> { return fail(errc::device_failure); }
    auto family() const -> wire::family { return wire::family::tpm2; }
    auto max_command_size() const -> std::size_t { return 4096; }
};

struct source {
    template <class Handler>
    auto serve(Handler&) -> result<void> { return {}; }
    void stop() noexcept {}
};

struct stage {
    auto on_command(wire::command_view const&) -> result<void> { return {}; }
    void on_response(wire::command_view const&, wire::response_view) {}
};

}  // namespace xtpm::archetypes
