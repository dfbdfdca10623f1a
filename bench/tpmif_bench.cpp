// xtpm-tpmif-bench: the guest path's round trip (issue 3, "Benchmark it must have"): a frontend
// process -> the tpmif page over sim_hv -> xtpm-vtpmd --hv sim -> libtpms, for TPM2_GetRandom(32),
// PCR_Extend(16) and PCR_Read(16), interleaved in one run with in-process libtpms, Debian's swtpm
// over its TCP socket, the bare shared-page floor, and the same vTPM path behind xtpm-front's
// socket. Targets: tpmif >= 3x faster than swtpm, and within 3 us of in-process libtpms at the
// median, everything on one CPU. docs/benchmarks.md, section "tpmif".
#include "build_info.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "placement.hpp"
#include "process.hpp"
#include "report.hpp"
#include "round_robin.hpp"
#include "stats.hpp"
#include "tcp_client.hpp"
#include "tpmif_chain.hpp"
#include "tpmif_page_floor.hpp"
#include "tpmif_sim_floor.hpp"

#include <xtpm/device/forward.hpp>
#include <xtpm/device/tpmif_frontend.hpp>
#include <xtpm/hv/sim.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "libtpms_inproc.hpp"  // last: tpm_types.h redefines TRUE/FALSE

namespace {

using namespace xtpm;
using namespace xtpm::bench;
namespace fs = std::filesystem;

constexpr char const* program = "xtpm-tpmif-bench";
constexpr double speedup_target = 3.0;    // tpmif at least 3x faster than swtpm's socket path
constexpr double added_target_us = 3.0;   // tpmif within 3 us of in-process libtpms (median)
constexpr auto start_limit = std::chrono::seconds{20};

struct options : run_options {
    options() { rounds = 31; calls = 400; warmup = 200; }
    std::string roles;  // directory holding xtpm-simhv/, xtpm-vtpmd/, ... (the build tree's roles/)
    bool front = true;
    std::string only;  // comma-separated contestants to run (profiling); empty: all
};

constexpr run_option_rules rules{.quick_calls = 200, .max_calls = 10'000'000, .pin_apart = true};

constexpr char const* usage =
    "usage: xtpm-tpmif-bench [--rounds N] [--calls N] [--warmup N] [--quick] [--verbose]\n"
    "                        [--pin same|apart|none] [--cpu N] [--roles DIR] [--swtpm PATH] [--no-front]\n"
    "                        [--only NAME,...]\n"
    "  Contestants: libtpms (in-process), swtpm (TCP), page-floor (a bare shared page + eventfds\n"
    "  between two processes), sim-floor (the same through sim_hv's grants and event channels),\n"
    "  poll-floor (the same page, no eventfds: both ends look at it with sched_yield()),\n"
    "  tpmif (this process is guest 1: forward<tpmif_frontend<sim_hv>> -> xtpm-vtpmd --hv sim),\n"
    "  tpmif-sock (TCP -> xtpm-front as guest 2 -> tpmif -> xtpm-vtpmd).\n"
    "  --roles DIR: where xtpm-simhv/, xtpm-simxl/, xtpm-vtpmd/, xtpm-front/ are (default:\n"
    "  ../roles next to this binary).  --quick: 2 rounds x 200 calls.  --pin as xtpm-bench.\n"
    "  --only: run just these contestants (e.g. --only tpmif under strace or perf).\n";

auto parse_options(int argc, char** argv) -> outcome<options> {
    return parse_run_options<options>(argc, argv, rules, [](option_arg& a, options& o) -> outcome<bool> {
        if (a.name == "--roles") return a.store(o.roles);
        if (a.name == "--only") return a.store(o.only);
        if (a.name != "--no-front") return false;
        o.front = false;
        return true;
    });
}

// --- the direct tpmif client: this process is guest 1 ---------------------------------------

class tpmif_client {
public:
    using device = forward<tpmif_frontend<hv::sim_hv>>;

    static auto open(std::string const& hv_dir) -> outcome<tpmif_client> {
        auto h = hv::sim_hv::connect(hv_dir, direct_guest);
        if (!h) return std::unexpected{"sim_hv connect: " + h.error().message()};
        tpmif_frontend<hv::sim_hv>::options o;
        auto f = tpmif_frontend<hv::sim_hv>::open(std::move(*h), o);
        if (!f) return std::unexpected{"tpmif frontend: " + f.error().message()};
        return tpmif_client{device{std::move(*f)}};
    }

    // What a pipeline above forward<> does: admit the command, execute it on the device.
    auto roundtrip(wire::bytes_view cmd) -> result<wire::bytes_view> {
        auto v = wire::parse_command(cmd, wire::family::tpm2, dev_.max_command_size());
        if (!v) return std::unexpected{v.error()};
        auto r = dev_.execute(*v, buf_);
        if (!r) return std::unexpected{r.error()};
        return r->bytes;
    }

private:
    explicit tpmif_client(device d) : dev_{std::move(d)} {}
    device dev_;
    std::array<std::byte, 4096> buf_{};
};

// --- contestants ------------------------------------------------------------------------------

// Only swtpm has a process and a state directory of its own; the chain owns the others'.
using contestant = bench::contestant<libtpms_inproc*, tcp_client, page_floor, sim_floor, tpmif_client>;

// TPM2_Startup(CLEAR) on a vTPM that xtpm-vtpmd --hv powered on but left to its guest to start.
template <class Client>
auto startup(Client& cl) -> outcome<> {
    std::array<std::byte, 12> buf{};
    wire::writer w{buf};
    wire::encode(w, wire::command_header{wire::tpm_st::no_sessions, 12, wire::tpm_cc::startup});
    w.write_be(std::uint16_t{0});
    auto cmd = w.finish();
    if (!cmd) return std::unexpected{cmd.error().message()};
    auto rsp = cl.roundtrip(*cmd);
    if (!rsp) return std::unexpected{"Startup: " + rsp.error().message()};
    auto const rc = static_cast<std::uint32_t>(wire::response_view{*rsp}.rc());
    if (rc != 0 && rc != 0x100) return std::unexpected{"Startup rc " + std::to_string(rc)};  // 0x100: already started
    return {};
}

// --- report -------------------------------------------------------------------------------------

void print_report(std::vector<contestant>& cs, options const& o) {
    result_log results;
    std::printf("\ntimes in us per call, client side. p50/p99 over all %u x %u calls; mean = median of per-round means.\n\n",
                o.rounds, o.calls);
    print_latency_table(cs, o.rounds, o.verbose, results);
    auto find = [&](std::string_view name, command_id cmd) { return complete_series(cs, name, cmd, o.rounds); };
    std::printf("\nderived (median over rounds of paired per-round p50s); targets: swtpm/tpmif >= %.0f, "
                "tpmif - libtpms <= %.1f us\n\n", speedup_target, added_target_us);
    std::printf("%-16s %11s %9s %14s %15s %9s %16s %10s\n", "command", "swtpm/tpmif", "tpmif-lib", "tpmif-sim-lib",
                "tpmif-poll-lib", "sim-page", "swtpm/tpmif-sock", "sock-tpmif");
    for (auto cmd : all_commands) {
        auto const* lib = find("libtpms", cmd);
        auto const* sw = find("swtpm", cmd);
        auto const* flo = find("page-floor", cmd);
        auto const* sim = find("sim-floor", cmd);
        auto const* tp = find("tpmif", cmd);
        auto const* so = find("tpmif-sock", cmd);
        auto const* pf = find("poll-floor", cmd);
        auto const ratio = [](double a, double b) { return a / b; };
        auto const minus = [](double a, double b) { return a - b; };
        auto speedup = paired_median(ratio, sw, tp);
        auto added = paired_median(minus, tp, lib);
        auto own = paired_median([](double t, double f, double l) { return t - f - l; }, tp, sim, lib);
        auto above_poll = paired_median([](double t, double f, double l) { return t - f - l; }, tp, pf, lib);
        auto policy = paired_median(minus, sim, flo);
        auto sock_speedup = paired_median(ratio, sw, so);
        auto sock_extra = paired_median(minus, so, tp);
        std::printf("%-16s %11s %9s %14s %15s %9s %16s %10s\n", std::string{display_name(cmd)}.c_str(),
                    fmt(speedup, "%.2fx").c_str(), fmt(added).c_str(), fmt(own).c_str(), fmt(above_poll).c_str(), fmt(policy).c_str(),
                    fmt(sock_speedup, "%.2fx").c_str(), fmt(sock_extra).c_str());
        auto const key = std::string{key_name(cmd)};
        if (speedup)
            results.add("RESULT name=speedup_swtpm_over_tpmif.%s value=%.3f target=%.1f met=%s", key.c_str(), *speedup,
                        speedup_target, *speedup >= speedup_target ? "yes" : "no");
        if (added)
            results.add("RESULT name=tpmif_minus_libtpms.%s value_us=%.3f target_us=%.1f met=%s", key.c_str(), *added,
                        added_target_us, *added <= added_target_us ? "yes" : "no");
        if (own) results.add("RESULT name=tpmif_minus_simfloor_minus_libtpms.%s value_us=%.3f", key.c_str(), *own);
        if (above_poll) results.add("RESULT name=tpmif_minus_pollfloor_minus_libtpms.%s value_us=%.3f", key.c_str(), *above_poll);
        if (policy) results.add("RESULT name=simfloor_minus_pagefloor.%s value_us=%.3f", key.c_str(), *policy);
        if (sock_speedup) results.add("RESULT name=speedup_swtpm_over_tpmif_sock.%s value=%.3f", key.c_str(), *sock_speedup);
        if (sock_extra) results.add("RESULT name=tpmif_sock_minus_tpmif.%s value_us=%.3f", key.c_str(), *sock_extra);
    }
    std::printf("\n");
    results.print();
}

auto run(options const& o) -> int {
    install_stop_handlers();
    auto const cmds = build_commands();
    if (!cmds) return std::fprintf(stderr, "xtpm-tpmif-bench: %s\n", cmds.error().c_str()), 1;

    // Placement before any child starts, so that every process inherits it (xtpm-bench's --pin):
    // with `apart` the chain's processes inherit the server CPU; the bench moves to its own after.
    auto const pl = choose_placement(o.pin, o.cpu);
    if (!pl) return std::fprintf(stderr, "xtpm-tpmif-bench: %s\n", pl.error().what.c_str()), pl.error().status;
    if (pl->bench)
        if (auto p = pin_to(pl->servers.value_or(*pl->bench)); !p)
            return std::fprintf(stderr, "xtpm-tpmif-bench: %s\n", p.error().c_str()), 1;

    auto const roles = o.roles.empty() ? (self_exe().parent_path() / "../roles").lexically_normal() : fs::path{o.roles};
    chain_paths const paths{roles / "xtpm-simhv/xtpm-simhv", roles / "xtpm-simxl/xtpm-simxl", roles / "xtpm-vtpmd/xtpm-vtpmd",
                            roles / "xtpm-front/xtpm-front"};
    for (auto const& p : {paths.simhv, paths.simxl, paths.vtpmd, paths.front})
        if (::access(p.c_str(), X_OK) != 0)
            return std::fprintf(stderr, "xtpm-tpmif-bench: %s is not built (--roles DIR)\n", p.c_str()), 2;

    std::vector<contestant> cs(7);
    cs[0].name = "libtpms";
    cs[1].name = "swtpm";
    cs[2].name = "page-floor";
    cs[3].name = "sim-floor";
    cs[4].name = "tpmif";
    cs[5].name = "tpmif-sock";
    cs[6].name = "poll-floor";

    auto chain = sim_chain::start(paths, o.front, start_limit);
    if (!chain) return std::fprintf(stderr, "xtpm-tpmif-bench: starting the sim chain: %s\n", chain.error().c_str()), 1;

    // swtpm takes the CPU this process has now, as the chain did.
    if (auto sw = find_program(o.swtpm); !sw) {
        cs[1].status = "not found (" + o.swtpm + ")";
    } else if (auto r = start_server(cs[1], program, std::nullopt, start_limit,
                                     [&](std::uint16_t p, std::string const& state) {
                                         return swtpm_argv(sw->string(), p, state);
                                     });
               !r) {
        cs[1].mark_failed(program, "to start", r.error());
    }

    auto floor = page_floor::start();
    if (!floor) cs[2].mark_failed(program, "to start", floor.error().message());
    else cs[2].conn = std::move(*floor);
    auto poll_floor = page_floor::start(page_floor::mode::polling);
    if (!poll_floor) cs[6].mark_failed(program, "to start", poll_floor.error().message());
    else cs[6].conn = std::move(*poll_floor);

    // Forks before this process opens its own sim_hv connection.
    if (auto f = sim_floor::start(chain->hv_dir()); !f) cs[3].mark_failed(program, "to start", f.error());
    else cs[3].conn = std::move(*f);

    if (auto t = tpmif_client::open(chain->hv_dir()); !t)
        cs[4].mark_failed(program, "to connect", t.error() + "; vtpmd log:\n" + chain->log_of("vtpmd1"));
    else cs[4].conn = std::move(*t);

    if (!o.front) {
        cs[5].status = "not run (--no-front)";
    } else if (auto fd = io::connect_to(io::tcp_endpoint{"127.0.0.1", chain->front_port()}); !fd) {
        cs[5].mark_failed(program, "to connect", fd.error().message());
    } else {
        cs[5].conn = tcp_client{std::move(*fd)};
    }

    auto lib = libtpms_inproc::start();
    if (!lib) return std::fprintf(stderr, "xtpm-tpmif-bench: in-process libtpms: %s\n", lib.error().message().c_str()), 1;
    cs[0].conn = &*lib;
    if (pl->servers)
        if (auto p = pin_to(*pl->bench); !p)
            return std::fprintf(stderr, "xtpm-tpmif-bench: %s\n", p.error().c_str()), 1;

    for (auto* c : {&cs[4], &cs[5]}) {
        if (!c->active()) continue;
        auto r = std::visit([&](auto& cl) -> outcome<> {
            using T = std::decay_t<decltype(cl)>;
            if constexpr (std::is_same_v<T, tpmif_client> || std::is_same_v<T, tcp_client>) return startup(cl);
            else return std::unexpected{"no client"};
        }, c->conn);
        if (!r) c->mark_failed(program, "at Startup", r.error());
    }

    std::printf("xtpm-tpmif-bench %s: %u rounds x %u calls per command and contestant, round-robin; %u warm-up calls\n",
                today().c_str(), o.rounds, o.calls, o.warmup);
    std::printf("tree: CMAKE_BUILD_TYPE=%s, %s; %u CPUs, %s\n", build_type.empty() ? "(none; bench at -O2)" : std::string{build_type}.c_str(),
                std::string{compiler}.c_str(), std::thread::hardware_concurrency(),
                pl->describe("all on CPU", "every server").c_str());
    std::printf("chain: xtpm-simhv, xtpm-vtpmd --hv sim (pid %d, guest 1 = this process)%s\n",
                static_cast<int>(chain->vtpmd_direct().pid()),
                o.front ? (", xtpm-vtpmd (pid " + std::to_string(chain->vtpmd_front().pid()) + ") behind xtpm-front (pid " +
                           std::to_string(chain->front().pid()) + ", guest 2)").c_str() : "");

    if (!o.only.empty())
        for (auto& c : cs)
            if (c.active() && ("," + o.only + ",").find("," + c.name + ",") == std::string::npos) {
                c.status = "not run (--only)";
                c.conn = std::monostate{};
            }
    std::fflush(stdout);

    warm_up(program, cs, *cmds, o.warmup, false);
    run_rounds(program, cs, *cmds, o.rounds, o.calls);
    if (stop_requested) return std::fprintf(stderr, "xtpm-tpmif-bench: interrupted\n"), 130;

    print_report(cs, o);
    for (auto& c : cs) c.conn = std::monostate{};  // frontends close before their backends stop
    chain->stop();
    return std::ranges::any_of(cs, &contestant::failed) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) return usage_status(program, usage, o.error());
    return run(*o);
}
