// xtpm-tpmif-bench: the guest path's round trip (issue 3, "Benchmark it must have"): a frontend
// process -> the tpmif page over sim_hv -> xtpm-vtpmd --hv sim -> libtpms, for TPM2_GetRandom(32),
// PCR_Extend(16) and PCR_Read(16), interleaved in one run with in-process libtpms, Debian's swtpm
// over its TCP socket, the bare shared-page floor, and the same vTPM path behind xtpm-front's
// socket. Targets: tpmif >= 3x faster than swtpm, and within 3 us of in-process libtpms at the
// median, everything on one CPU. docs/benchmarks.md, section "tpmif".
#include "build_info.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "process.hpp"
#include "stats.hpp"
#include "tcp_client.hpp"
#include "tpmif_chain.hpp"
#include "tpmif_page_floor.hpp"
#include "tpmif_sim_floor.hpp"

#include <xtpm/device/forward.hpp>
#include <xtpm/device/tpmif_frontend.hpp>
#include <xtpm/hv/sim.hpp>

#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "libtpms_inproc.hpp"  // last: tpm_types.h redefines TRUE/FALSE

namespace {

using namespace xtpm;
using namespace xtpm::bench;
namespace fs = std::filesystem;

constexpr double speedup_target = 3.0;    // tpmif at least 3x faster than swtpm's socket path
constexpr double added_target_us = 3.0;   // tpmif within 3 us of in-process libtpms (median)
constexpr auto start_limit = std::chrono::seconds{20};

struct options {
    unsigned rounds = 31;
    unsigned calls = 400;
    unsigned warmup = 200;
    bool verbose = false;
    std::string pin = "same";
    std::optional<unsigned> cpu;
    std::string swtpm = "swtpm";
    std::string roles;  // directory holding xtpm-simhv/, xtpm-vtpmd/, ... (the build tree's roles/)
    bool front = true;
    std::string only;  // comma-separated contestants to run (profiling); empty: all
};

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
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view const a = argv[i];
        auto value = [&]() -> outcome<std::string_view> {
            if (i + 1 >= argc) return std::unexpected{std::string{a} + " needs a value"};
            return std::string_view{argv[++i]};
        };
        auto number = [&](unsigned& out, unsigned lo, unsigned hi) -> outcome<> {
            auto v = value();
            if (!v) return std::unexpected{v.error()};
            auto n = parse_uint(*v, lo, hi);
            if (!n) return std::unexpected{std::string{a} + ": a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"};
            out = *n;
            return {};
        };
        outcome<> r;
        if (a == "--rounds") r = number(o.rounds, 1, 1000);
        else if (a == "--calls") r = number(o.calls, 1, 10'000'000);
        else if (a == "--warmup") r = number(o.warmup, 0, 1'000'000);
        else if (a == "--quick") o.rounds = 2, o.calls = 200, o.warmup = 20;
        else if (a == "--verbose" || a == "-v") o.verbose = true;
        else if (a == "--no-front") o.front = false;
        else if (a == "--cpu") {
            unsigned c = 0;
            r = number(c, 0, CPU_SETSIZE - 1);
            o.cpu = c;
        } else if (a == "--pin" || a == "--swtpm" || a == "--roles" || a == "--only") {
            auto v = value();
            if (!v) return std::unexpected{v.error()};
            if (a == "--pin" && *v != "same" && *v != "apart" && *v != "none") return std::unexpected{"--pin: same, apart or none"};
            (a == "--pin" ? o.pin : a == "--swtpm" ? o.swtpm : a == "--only" ? o.only : o.roles) = std::string{*v};
        } else if (a == "--help" || a == "-h") {
            return std::unexpected{std::string{}};
        } else {
            return std::unexpected{"unknown option " + std::string{a}};
        }
        if (!r) return std::unexpected{r.error()};
    }
    return o;
}

auto self_dir() -> fs::path {
    std::error_code ec;
    auto p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path{} : p.parent_path();
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

using client = std::variant<std::monostate, libtpms_inproc*, tcp_client, page_floor, sim_floor, tpmif_client>;

struct contestant {
    std::string name;
    std::string status;  // empty while it runs
    bool failed = false;
    client conn;
    child_process proc;  // swtpm only; the chain owns the others
    temp_dir dir;
    std::array<series, all_commands.size()> results;
    [[nodiscard]] auto active() const -> bool { return status.empty(); }
    auto of(command_id c) -> series& { return results[static_cast<std::size_t>(c)]; }
};

template <class Client>
auto run_batch(Client& cl, wire::bytes_view cmd, unsigned calls, std::vector<double>* out, bool require_success = true)
    -> outcome<> {
    using clock = std::chrono::steady_clock;
    for (unsigned i = 0; i < calls; ++i) {
        if (stop_requested) return std::unexpected{"interrupted"};
        auto const t0 = clock::now();
        auto rsp = cl.roundtrip(cmd);
        auto const t1 = clock::now();
        if (!rsp) return std::unexpected{rsp.error().message()};
        auto hdr = wire::parse_response(*rsp);
        if (!hdr) return std::unexpected{"malformed response: " + hdr.error().message()};
        if (require_success && hdr->rc != wire::tpm_rc::success) {
            char buf[48];
            std::snprintf(buf, sizeof buf, "TPM rc 0x%X", static_cast<unsigned>(hdr->rc));
            return std::unexpected{std::string{buf}};
        }
        if (out) out->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    return {};
}

auto run_on(contestant& c, wire::bytes_view cmd, unsigned calls, std::vector<double>* out) -> outcome<> {
    return std::visit(
        [&](auto& cl) -> outcome<> {
            using T = std::decay_t<decltype(cl)>;
            if constexpr (std::is_same_v<T, std::monostate>) return std::unexpected{"no client"};
            else if constexpr (std::is_pointer_v<T>) return run_batch(*cl, cmd, calls, out);
            else return run_batch(cl, cmd, calls, out);
        },
        c.conn);
}

void mark_failed(contestant& c, std::string const& when, std::string const& why) {
    c.status = "failed " + when + " (see stderr)";
    c.failed = true;
    c.conn = std::monostate{};
    std::fprintf(stderr, "xtpm-tpmif-bench: %s failed %s: %s\n", c.name.c_str(), when.c_str(), why.c_str());
}

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

struct result_log {
    std::vector<std::string> lines;
    [[gnu::format(printf, 2, 3)]] void add(char const* f, ...) {
        char buf[256];
        va_list ap;
        va_start(ap, f);
        std::vsnprintf(buf, sizeof buf, f, ap);
        va_end(ap);
        lines.emplace_back(buf);
    }
};

void print_report(std::vector<contestant>& cs, options const& o) {
    result_log results;
    std::printf("\ntimes in us per call, client side. p50/p99 over all %u x %u calls; mean = median of per-round means.\n\n",
                o.rounds, o.calls);
    std::printf("%-16s %-12s %9s %9s %9s %8s\n", "command", "contestant", "p50", "p99", "mean", "calls");
    for (auto cmd : all_commands) {
        bool first = true;
        for (auto& c : cs) {
            auto const label = first ? std::string{display_name(cmd)} : std::string{};
            first = false;
            auto const& s = c.of(cmd);
            if (s.rounds() != o.rounds) {
                std::printf("%-16s %-12s %s\n", label.c_str(), c.name.c_str(), c.status.empty() ? "incomplete" : c.status.c_str());
                continue;
            }
            std::printf("%-16s %-12s %9.2f %9.2f %9.2f %8zu\n", label.c_str(), c.name.c_str(), s.p50(), s.p99(),
                        s.mean_of_rounds(), s.count());
            results.add("RESULT name=%s.%s p50_us=%.3f p99_us=%.3f mean_us=%.3f calls=%zu", c.name.c_str(),
                        std::string{key_name(cmd)}.c_str(), s.p50(), s.p99(), s.mean_of_rounds(), s.count());
            if (o.verbose) {
                std::printf("%-29s per-round p50:", "");
                for (double x : s.round_p50s()) std::printf(" %.2f", x);
                std::printf("\n");
            }
        }
    }
    auto find = [&](std::string_view name, command_id cmd) -> series const* {
        for (auto& c : cs)
            if (c.name == name && c.of(cmd).rounds() == o.rounds) return &c.of(cmd);
        return nullptr;
    };
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
    for (auto const& l : results.lines) std::printf("%s\n", l.c_str());
}

void on_signal(int) { stop_requested = 1; }

auto run(options const& o) -> int {
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    std::array<command_bytes, all_commands.size()> cmds{};
    for (auto c : all_commands) {
        auto b = build_command(c);
        if (!b) return std::fprintf(stderr, "xtpm-tpmif-bench: encoding: %s\n", b.error().message().c_str()), 1;
        cmds[static_cast<std::size_t>(c)] = *b;
    }

    // Placement before any child starts, so that every process inherits it (xtpm-bench's --pin).
    std::optional<unsigned> server_cpu;
    std::string placement = "unpinned";
    auto const cpus = allowed_cpus();
    if (cpus.empty()) return std::fprintf(stderr, "xtpm-tpmif-bench: sched_getaffinity failed\n"), 1;
    unsigned const mine = o.cpu.value_or(cpus.back());
    if (o.pin != "none") {
        if (std::ranges::find(cpus, mine) == cpus.end()) return std::fprintf(stderr, "CPU %u is not allowed\n", mine), 2;
        if (o.pin == "apart") {
            for (auto c : cpus)
                if (c != mine) { server_cpu = c; break; }
            if (!server_cpu) return std::fprintf(stderr, "xtpm-tpmif-bench: --pin apart needs 2 CPUs\n"), 2;
            // The chain's processes inherit the server CPU; the bench moves to its own after.
            if (auto p = pin_self(*server_cpu); !p) return std::fprintf(stderr, "pin: %s\n", p.error().message().c_str()), 1;
            placement = "bench on CPU " + std::to_string(mine) + ", every server on CPU " + std::to_string(*server_cpu);
        } else {
            if (auto p = pin_self(mine); !p) return std::fprintf(stderr, "pin: %s\n", p.error().message().c_str()), 1;
            placement = "all on CPU " + std::to_string(mine);
        }
    }

    auto const roles = o.roles.empty() ? (self_dir() / "../roles").lexically_normal() : fs::path{o.roles};
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

    if (auto sw = find_program(o.swtpm); !sw) {
        cs[1].status = "not found (" + o.swtpm + ")";
    } else if (auto dir = temp_dir::create("xtpm-tpmif-bench-swtpm"); !dir) {
        mark_failed(cs[1], "to start", dir.error().message());
    } else {
        cs[1].dir = std::move(*dir);
        auto const state = cs[1].dir.path();
        for (int attempt = 0; attempt < 3 && !cs[1].proc.alive(); ++attempt) {
            auto port = pick_port_pair();
            if (!port) break;
            auto const ep = [](unsigned q) { return "type=tcp,port=" + std::to_string(q) + ",bindaddr=127.0.0.1"; };
            auto proc = child_process::spawn({sw->string(), "socket", "--tpm2", "--server", ep(*port), "--ctrl", ep(*port + 1u),
                                              "--tpmstate", "dir=" + state, "--flags", "not-need-init,startup-clear"},
                                             state + "/log");
            if (!proc) break;
            cs[1].proc = std::move(*proc);
            if (auto fd = connect_when_ready(cs[1].proc, *port, start_limit)) cs[1].conn = tcp_client{std::move(*fd)};
            else cs[1].proc.stop();
        }
        if (std::holds_alternative<std::monostate>(cs[1].conn)) mark_failed(cs[1], "to start", log_tail(state + "/log"));
    }

    auto floor = page_floor::start();
    if (!floor) mark_failed(cs[2], "to start", floor.error().message());
    else cs[2].conn = std::move(*floor);
    auto poll_floor = page_floor::start(page_floor::mode::polling);
    if (!poll_floor) mark_failed(cs[6], "to start", poll_floor.error().message());
    else cs[6].conn = std::move(*poll_floor);

    // Forks before this process opens its own sim_hv connection.
    if (auto f = sim_floor::start(chain->hv_dir()); !f) mark_failed(cs[3], "to start", f.error());
    else cs[3].conn = std::move(*f);

    if (auto t = tpmif_client::open(chain->hv_dir()); !t) mark_failed(cs[4], "to connect", t.error() + "; vtpmd log:\n" + chain->log_of("vtpmd1"));
    else cs[4].conn = std::move(*t);

    if (!o.front) {
        cs[5].status = "not run (--no-front)";
    } else if (auto fd = io::connect_to(io::tcp_endpoint{"127.0.0.1", chain->front_port()}); !fd) {
        mark_failed(cs[5], "to connect", fd.error().message());
    } else {
        cs[5].conn = tcp_client{std::move(*fd)};
    }

    auto lib = libtpms_inproc::start();
    if (!lib) return std::fprintf(stderr, "xtpm-tpmif-bench: in-process libtpms: %s\n", lib.error().message().c_str()), 1;
    cs[0].conn = &*lib;
    if (server_cpu)
        if (auto p = pin_self(mine); !p) return std::fprintf(stderr, "pin: %s\n", p.error().message().c_str()), 1;

    for (auto* c : {&cs[4], &cs[5]}) {
        if (!c->active()) continue;
        auto r = std::visit([&](auto& cl) -> outcome<> {
            using T = std::decay_t<decltype(cl)>;
            if constexpr (std::is_same_v<T, tpmif_client> || std::is_same_v<T, tcp_client>) return startup(cl);
            else return std::unexpected{"no client"};
        }, c->conn);
        if (!r) mark_failed(*c, "at Startup", r.error());
    }

    std::time_t const now = std::time(nullptr);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", std::localtime(&now));
    std::printf("xtpm-tpmif-bench %s: %u rounds x %u calls per command and contestant, round-robin; %u warm-up calls\n",
                when, o.rounds, o.calls, o.warmup);
    std::printf("tree: CMAKE_BUILD_TYPE=%s, %s; %u CPUs, %s\n", build_type.empty() ? "(none; bench at -O2)" : std::string{build_type}.c_str(),
                std::string{compiler}.c_str(), std::thread::hardware_concurrency(), placement.c_str());
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

    for (auto cmd : all_commands)
        for (auto& c : cs)
            if (c.active() && !stop_requested)
                if (auto r = run_on(c, cmds[static_cast<std::size_t>(cmd)].bytes(), std::max(o.warmup, 1u), nullptr); !r)
                    mark_failed(c, "in warm-up", std::string{display_name(cmd)} + ": " + r.error());

    for (unsigned r = 0; r < o.rounds && !stop_requested; ++r)
        for (auto cmd : all_commands)
            for (std::size_t k = 0; k < cs.size(); ++k) {
                auto& c = cs[(k + r) % cs.size()];  // rotate who goes first
                if (!c.active()) continue;
                auto& s = c.of(cmd);
                if (auto res = run_on(c, cmds[static_cast<std::size_t>(cmd)].bytes(), o.calls, &s.new_round(o.calls)); !res) {
                    s.drop_last_round();
                    if (stop_requested) break;
                    mark_failed(c, "in round " + std::to_string(r + 1), std::string{display_name(cmd)} + ": " + res.error());
                }
            }
    if (stop_requested) return std::fprintf(stderr, "xtpm-tpmif-bench: interrupted\n"), 130;

    print_report(cs, o);
    for (auto& c : cs) c.conn = std::monostate{};  // frontends close before their backends stop
    chain->stop();
    bool failed = false;
    for (auto& c : cs) failed = failed || c.failed;
    return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) {
        if (!o.error().empty()) std::fprintf(stderr, "xtpm-tpmif-bench: %s\n", o.error().c_str());
        std::fputs(usage, o.error().empty() ? stdout : stderr);
        return o.error().empty() ? 0 : 2;
    }
    return run(*o);
}
