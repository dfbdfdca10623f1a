// Where a bench and its servers run (--pin same|apart|none, --cpu N; docs/benchmarks.md,
// Method). Unpinned, a client/server pair on 2 vCPUs flips between same-CPU (~8 us) and
// cross-CPU wake-ups (~100 us) from run to run, which drowns a 1 us difference; one shared
// CPU measures the software path, and `apart` shows the cross-CPU case on purpose. Deciding
// is shared; when to pin is each bench's (a child inherits the CPU its parent has at fork).
#pragma once

#include "cli.hpp"
#include "process.hpp"

#include <algorithm>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace xtpm::bench {

struct placement {
    std::optional<unsigned> bench;    // nullopt: unpinned (--pin none)
    std::optional<unsigned> servers;  // --pin apart: another allowed CPU

    // The heading's words: "unpinned", "<all> N" or "bench on CPU N, <servers> on CPU M".
    [[nodiscard]] auto describe(std::string_view all = "all on CPU", std::string_view others = "servers") const
        -> std::string {
        if (!bench) return "unpinned";
        if (!servers) return std::string{all} + " " + std::to_string(*bench);
        return "bench on CPU " + std::to_string(*bench) + ", " + std::string{others} + " on CPU " +
               std::to_string(*servers);
    }
};

// What cannot be honoured, with the exit status it earns: 2 for a choice this machine
// does not allow (like a bad option), 1 for a failed system call.
struct placement_error {
    std::string what;
    int status;
};

// Decide, pinning nothing yet. `pin` is one of same, apart, none (checked by the parser);
// the bench's CPU is `cpu`, by default the last allowed one.
inline auto choose_placement(std::string_view pin, std::optional<unsigned> cpu)
    -> std::expected<placement, placement_error> {
    if (pin == "none") return placement{};
    auto const cpus = allowed_cpus();
    if (cpus.empty()) return std::unexpected{placement_error{"sched_getaffinity failed", 1}};
    unsigned const mine = cpu.value_or(cpus.back());
    if (std::ranges::find(cpus, mine) == cpus.end())
        return std::unexpected{placement_error{"CPU " + std::to_string(mine) + " is not allowed", 2}};
    placement p{mine, std::nullopt};
    if (pin == "apart") {
        for (auto c : cpus)
            if (c != mine) {
                p.servers = c;
                break;
            }
        if (!p.servers) return std::unexpected{placement_error{"--pin apart needs 2 CPUs", 2}};
    }
    return p;
}

// pin_self with the message a bench prints when it fails.
inline auto pin_to(unsigned cpu) -> outcome<> {
    if (auto p = pin_self(cpu); !p)
        return std::unexpected{"pin to CPU " + std::to_string(cpu) + ": " + p.error().message()};
    return {};
}

}  // namespace xtpm::bench
