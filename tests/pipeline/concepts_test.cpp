#include <xtpm/pipeline.hpp>

#include "archetypes/archetypes.hpp"

#include <catch2/catch.hpp>

namespace {
using namespace xtpm;

// Positive: each archetype models its concept, and the pipeline accepts them.
static_assert(tpm_device<archetypes::device>);
static_assert(request_source<archetypes::source>);
static_assert(stage<archetypes::stage>);
static_assert(command_handler<handler_archetype>);
static_assert(command_handler<pipeline<archetypes::source, archetypes::device, archetypes::stage>>);

// Negative: missing or mistyped members are rejected.
struct no_family { auto execute(wire::command_view, wire::bytes_span) -> result<wire::response_view>; std::size_t max_command_size() const; };
struct wrong_return { int execute(wire::command_view, wire::bytes_span); wire::family family() const; std::size_t max_command_size() const; };
static_assert(!tpm_device<no_family>);
static_assert(!tpm_device<wrong_return>);
static_assert(!cancellable_device<archetypes::device>);
static_assert(!powered_device<archetypes::device>);
static_assert(!stateful_device<archetypes::device>);

struct throwing_cancel : archetypes::device { void cancel() {} };  // must be noexcept
struct good_cancel : archetypes::device { void cancel() noexcept {} };
static_assert(!cancellable_device<throwing_cancel>);
static_assert(cancellable_device<good_cancel>);

struct no_stop { template <class H> auto serve(H&) -> result<void>; };
static_assert(!request_source<no_stop>);
struct stage_without_response { auto on_command(wire::command_view const&) -> result<void>; };
static_assert(!stage<stage_without_response>);
}  // namespace

TEST_CASE("concepts: archetypes compile into a pipeline", "[pipeline][concepts]") {
    xtpm::pipeline p{archetypes::source{}, archetypes::device{}, archetypes::stage{}};
    CHECK(p.run().has_value());
}
