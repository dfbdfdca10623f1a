// xtpm-bench: one interleaved run of in-process libtpms, a bare TCP floor
// server, Debian's swtpm and xtpm-vtpmd on TPM2_GetRandom(32), PCR_Extend(16)
// and PCR_Read(16); see docs/benchmarks.md. Round-robin over the contestants in
// every round, so the drift of a noisy VM hits all of them (toolchain.md 7.12).
#include "build_info.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "floor_server.hpp"
#include "placement.hpp"
#include "process.hpp"
#include "report.hpp"
#include "round_robin.hpp"
#include "tcp_client.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libtpms_inproc.hpp"  // last: tpm_types.h redefines TRUE/FALSE

namespace {

using namespace xtpm;
using namespace xtpm::bench;
namespace fs = std::filesystem;

constexpr char const* program = "xtpm-bench";
constexpr double added_cost_target_us = 1.0;  // the target for xtpm's own overhead
constexpr auto start_limit = std::chrono::seconds{10};

struct options : run_options {
    // Many short rounds: the VM's speed shifts by ~1.5x for tens of ms at a
    // time; a 400-call batch (~4 ms) is short enough that the contestants of
    // one round usually share the same phase, which the paired medians need.
    options() { rounds = 31; calls = 400; warmup = 200; }
    std::string vtpmd;                   // empty: $XTPM_VTPMD, then next to xtpm-bench in the build tree
    std::optional<unsigned> floor_port;  // internal: run as the floor server
};

constexpr run_option_rules rules{.quick_calls = 200, .max_calls = 10'000'000, .pin_apart = true};

constexpr char const* usage =
    "usage: xtpm-bench [--rounds N] [--calls N] [--warmup N] [--quick]\n"
    "                  [--pin same|apart|none] [--cpu N] [--verbose]\n"
    "                  [--xtpm-vtpmd PATH] [--swtpm PATH]\n"
    "       xtpm-bench --floor-server PORT   (internal: the bare TCP floor server)\n"
    "  --quick: 2 rounds x 200 calls, a smoke run.  xtpm-vtpmd defaults to $XTPM_VTPMD,\n"
    "  then ../roles/xtpm-vtpmd/xtpm-vtpmd relative to this binary.\n"
    "  --pin same (default): the bench and every server on one CPU (--cpu, default the last\n"
    "  allowed); apart: the servers on another CPU; none: leave placement to the scheduler.\n";

auto parse_options(int argc, char** argv) -> outcome<options> {
    return parse_run_options<options>(argc, argv, rules, [](option_arg& a, options& o) -> outcome<bool> {
        if (a.name == "--floor-server") return a.store(o.floor_port, 1, 65535);
        if (a.name == "--xtpm-vtpmd") return a.store(o.vtpmd);
        return false;
    });
}

auto vtpmd_path(options const& o) -> fs::path {
    if (!o.vtpmd.empty()) return o.vtpmd;
    if (char const* env = std::getenv("XTPM_VTPMD"); env && *env) return env;
    return (self_exe().parent_path() / "../roles/xtpm-vtpmd/xtpm-vtpmd").lexically_normal();
}

using contestant = bench::contestant<libtpms_inproc*, tcp_client>;

// --- report ------------------------------------------------------------------

void print_report(std::vector<contestant>& cs, options const& o) {
    result_log results;
    std::printf("\ntimes in us per call: client-side round trip over one persistent TCP connection;\n"
                "libtpms = one TPMLIB_Process call in the bench process. p50/p99 over all %u x %u calls,\n"
                "mean = median of the %u per-round means.\n\n",
                o.rounds, o.calls, o.rounds);
    print_latency_table(cs, o.rounds, o.verbose, results);

    auto find = [&](std::string_view name, command_id cmd) { return complete_series(cs, name, cmd, o.rounds); };
    std::printf("\nderived, us (median over rounds of per-round p50s, paired within each round);\n"
                "added = (daemon - floor) - libtpms, the daemon's own cost; xtpm target <= %.1f us\n\n",
                added_cost_target_us);
    std::printf("%-16s %11s %11s %11s %11s %11s\n", "command", "xtpm/swtpm", "xtpm-floor", "xtpm added",
                "swtpm-floor", "swtpm added");
    for (auto cmd : all_commands) {
        auto const* lib = find("libtpms", cmd);
        auto const* flo = find("floor", cmd);
        auto const* sw = find("swtpm", cmd);
        auto const* xt = find("xtpm-vtpmd", cmd);
        auto ratio = paired_median([](double x, double s) { return x / s; }, xt, sw);
        auto minus = [](double d, double f) { return d - f; };
        auto added = [](double d, double f, double l) { return d - f - l; };
        auto xf = paired_median(minus, xt, flo), xa = paired_median(added, xt, flo, lib);
        auto sf = paired_median(minus, sw, flo), sa = paired_median(added, sw, flo, lib);
        std::printf("%-16s %11s %11s %11s %11s %11s\n", std::string{display_name(cmd)}.c_str(),
                    fmt(ratio, "%.3f").c_str(), fmt(xf).c_str(), fmt(xa).c_str(), fmt(sf).c_str(), fmt(sa).c_str());
        auto const key = std::string{key_name(cmd)};
        if (ratio) results.add("RESULT name=ratio_xtpm_swtpm.%s value=%.4f", key.c_str(), *ratio);
        if (xf) results.add("RESULT name=xtpm_minus_floor.%s value_us=%.3f", key.c_str(), *xf);
        if (xa)
            results.add("RESULT name=xtpm_added.%s value_us=%.3f target_us=%.1f met=%s", key.c_str(), *xa,
                       added_cost_target_us, *xa <= added_cost_target_us ? "yes" : "no");
        if (sf) results.add("RESULT name=swtpm_minus_floor.%s value_us=%.3f", key.c_str(), *sf);
        if (sa) results.add("RESULT name=swtpm_added.%s value_us=%.3f", key.c_str(), *sa);
    }

    std::printf("\nmemory of the daemons after the run, KiB (/proc/PID/status)\n\n");
    std::printf("%-12s %9s %9s\n", "daemon", "VmRSS", "VmHWM");
    for (auto& c : cs) {
        if (c.name != "swtpm" && c.name != "xtpm-vtpmd") continue;
        if (!c.memory) {
            std::printf("%-12s %s\n", c.name.c_str(), c.status.empty() ? "unavailable" : c.status.c_str());
            continue;
        }
        std::printf("%-12s %9ld %9ld\n", c.name.c_str(), c.memory->rss, c.memory->hwm);
        results.add("RESULT name=rss.%s vmrss_kib=%ld vmhwm_kib=%ld", c.name.c_str(), c.memory->rss, c.memory->hwm);
    }
    std::printf("\n");
    results.print();
}

auto run(options const& o) -> int {
    install_stop_handlers();
    auto const cmds = build_commands();
    if (!cmds) return std::fprintf(stderr, "xtpm-bench: %s\n", cmds.error().c_str()), 1;

    auto const pl = choose_placement(o.pin, o.cpu);
    if (!pl) return std::fprintf(stderr, "xtpm-bench: %s\n", pl.error().what.c_str()), pl.error().status;
    if (pl->bench)
        if (auto p = pin_to(*pl->bench); !p) return std::fprintf(stderr, "xtpm-bench: %s\n", p.error().c_str()), 1;
    auto const server_cpu = pl->servers;  // spawn pins a server there; otherwise it inherits the bench's CPU

    auto lib = libtpms_inproc::start();
    if (!lib) {
        std::fprintf(stderr, "xtpm-bench: in-process libtpms: %s\n", lib.error().message().c_str());
        return 1;
    }

    std::vector<contestant> cs(4);
    cs[0].name = "libtpms";
    cs[0].conn = &*lib;
    cs[1].name = "floor";
    cs[2].name = "swtpm";
    cs[3].name = "xtpm-vtpmd";

    // make_argv(port, state_dir) -> the server's command line (start_server).
    auto const start = [&](contestant& c, auto make_argv) {
        if (auto r = start_server(c, program, server_cpu, start_limit, make_argv); !r)
            c.mark_failed(program, "to start", r.error());
    };
    auto const swtpm_line = [](fs::path const& prog) {  // which xtpm-vtpmd accepts unchanged
        return [prog](std::uint16_t p, std::string const& state) { return swtpm_argv(prog.string(), p, state); };
    };

    auto const exe = self_exe();
    start(cs[1], [&](std::uint16_t p, std::string const&) {
        return std::vector<std::string>{exe.string(), "--floor-server", std::to_string(p)};
    });

    if (auto sw = find_program(o.swtpm); !sw) cs[2].status = "not found (" + o.swtpm + ")";
    else start(cs[2], swtpm_line(*sw));

    if (auto const vp = vtpmd_path(o); !executable(vp)) {
        cs[3].status = "not built";
        std::printf("xtpm-vtpmd: not built (%s)\n", vp.c_str());
    } else {
        start(cs[3], swtpm_line(vp));
    }

    std::printf("xtpm-bench %s: %u rounds x %u calls per command and contestant, round-robin; %u warm-up calls\n",
                today().c_str(), o.rounds, o.calls, o.warmup);
    std::printf("tree: CMAKE_BUILD_TYPE=%s, %s (xtpm-vtpmd must be optimised too for a fair run)\n",
                build_type.empty() ? "(none; bench at -O2)" : std::string{build_type}.c_str(),
                std::string{compiler}.c_str());
    auto const v = TPMLIB_GetVersion();
    std::printf("libtpms %u.%u.%u in-process; %u CPUs, %s; contestants:", (v >> 16) & 0xFF, (v >> 8) & 0xFF,
                v & 0xFF, std::thread::hardware_concurrency(), pl->describe().c_str());
    for (auto& c : cs) {
        if (c.proc.pid() > 0) std::printf(" %s (pid %d)", c.name.c_str(), static_cast<int>(c.proc.pid()));
        else std::printf(" %s%s", c.name.c_str(), c.active() ? "" : c.failed ? " (failed)" : " (absent)");
    }
    std::printf("\n");

    // Warm-up, with a check that every contestant moves as many bytes as a real TPM.
    warm_up(program, cs, *cmds, o.warmup, true);
    run_rounds(program, cs, *cmds, o.rounds, o.calls);
    if (stop_requested) {
        std::fprintf(stderr, "xtpm-bench: interrupted; stopping the servers\n");
        return 130;  // contestants' destructors stop every child by pid
    }

    for (auto& c : cs)
        if (c.proc.alive())
            if (auto m = read_memory(c.proc.pid())) c.memory = *m;
    print_report(cs, o);

    return std::ranges::any_of(cs, &contestant::failed) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) return usage_status(program, usage, o.error());
    if (o->floor_port) {
        auto s = floor_server::create();
        if (!s) return 1;
        auto r = s->serve(static_cast<std::uint16_t>(*o->floor_port));  // [1, 65535] by the parser
        std::fprintf(stderr, "floor server: %s\n", r ? "done" : r.error().message().c_str());
        return r ? 0 : 1;
    }
    return run(*o);
}
