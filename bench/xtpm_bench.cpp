// xtpm-bench: one interleaved run of in-process libtpms, a bare TCP floor
// server, Debian's swtpm and xtpm-vtpmd on TPM2_GetRandom(32), PCR_Extend(16)
// and PCR_Read(16); see docs/benchmarks.md. Round-robin over the contestants in
// every round, so the drift of a noisy VM hits all of them (toolchain.md 7.12).
#include "build_info.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "floor_server.hpp"
#include "process.hpp"
#include "stats.hpp"
#include "tcp_client.hpp"

#include <algorithm>
#include <charconv>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "libtpms_inproc.hpp"  // last: tpm_types.h redefines TRUE/FALSE

namespace {

using namespace xtpm;
using namespace xtpm::bench;
namespace fs = std::filesystem;

// Orchestration errors are only ever printed, so they carry text.
template <class T = void>
using outcome = std::expected<T, std::string>;

constexpr double added_cost_target_us = 1.0;  // the target for xtpm's own overhead
constexpr auto start_limit = std::chrono::seconds{10};

struct options {
    // Many short rounds: the VM's speed shifts by ~1.5x for tens of ms at a
    // time; a 400-call batch (~4 ms) is short enough that the contestants of
    // one round usually share the same phase, which the paired medians need.
    unsigned rounds = 31;
    unsigned calls = 400;
    unsigned warmup = 200;
    std::string vtpmd;        // empty: $XTPM_VTPMD, then next to xtpm-bench in the build tree
    std::string swtpm = "swtpm";
    std::optional<std::uint16_t> floor_port;  // internal: run as the floor server
    bool verbose = false;      // also print each round's p50
    std::string pin = "same";  // same: everything on one CPU; apart: servers on another; none
    std::optional<unsigned> cpu;  // the bench's CPU; default: the last one allowed
};

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
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view const a = argv[i];
        auto value = [&]() -> outcome<std::string_view> {
            if (i + 1 >= argc) return std::unexpected{std::string{a} + " needs a value"};
            return std::string_view{argv[++i]};
        };
        auto number = [&](unsigned lo, unsigned hi) -> outcome<unsigned> {
            auto v = value();
            if (!v) return std::unexpected{v.error()};
            auto n = parse_uint(*v, lo, hi);
            if (!n) return std::unexpected{std::string{a} + ": expected a number in [" + std::to_string(lo) +
                                           ", " + std::to_string(hi) + "]"};
            return *n;
        };
        outcome<unsigned> n = 0u;
        if (a == "--rounds") { n = number(1, 1000); if (n) o.rounds = *n; }
        else if (a == "--calls") { n = number(1, 10'000'000); if (n) o.calls = *n; }
        else if (a == "--warmup") { n = number(0, 1'000'000); if (n) o.warmup = *n; }
        else if (a == "--verbose" || a == "-v") o.verbose = true;
        else if (a == "--quick") { o.rounds = 2; o.calls = 200; o.warmup = 20; }
        else if (a == "--floor-server") { n = number(1, 65535); if (n) o.floor_port = static_cast<std::uint16_t>(*n); }
        else if (a == "--cpu") { n = number(0, CPU_SETSIZE - 1); if (n) o.cpu = *n; }
        else if (a == "--pin") {
            auto v = value();
            if (!v) return std::unexpected{v.error()};
            if (*v != "same" && *v != "apart" && *v != "none") return std::unexpected{"--pin: same, apart or none"};
            o.pin = std::string{*v};
        } else if (a == "--xtpm-vtpmd" || a == "--swtpm") {
            auto v = value();
            if (!v) return std::unexpected{v.error()};
            (a == "--swtpm" ? o.swtpm : o.vtpmd) = std::string{*v};
        } else if (a == "--help" || a == "-h") {
            return std::unexpected{std::string{}};
        } else {
            return std::unexpected{"unknown option " + std::string{a}};
        }
        if (!n) return std::unexpected{n.error()};
    }
    return o;
}

auto self_exe() -> fs::path {
    std::error_code ec;
    auto p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path{} : p;
}


// A command name resolved through $PATH, or a path taken as is.
auto vtpmd_path(options const& o) -> fs::path {
    if (!o.vtpmd.empty()) return o.vtpmd;
    if (char const* env = std::getenv("XTPM_VTPMD"); env && *env) return env;
    return (self_exe().parent_path() / "../roles/xtpm-vtpmd/xtpm-vtpmd").lexically_normal();
}

// --- contestants -------------------------------------------------------------

using client = std::variant<std::monostate, libtpms_inproc*, tcp_client>;

struct contestant {
    std::string name;
    std::string status;       // empty while it runs; else why it did not (complete)
    bool failed = false;      // a start-up or run failure: the bench exits 1
    client conn;
    temp_dir dir;
    child_process proc;       // after dir: stopped before its state directory is removed
    std::array<series, all_commands.size()> results;
    std::optional<memory_kib> memory;

    [[nodiscard]] auto active() const -> bool { return status.empty(); }
    auto of(command_id c) -> series& { return results[static_cast<std::size_t>(c)]; }
};

// Start a TCP server process and connect to it. make_argv(port, state_dir)
// builds the command line; a lost race for the port is retried with another.
template <class MakeArgv>
auto start_server(contestant& c, std::optional<unsigned> cpu, MakeArgv make_argv) -> outcome<> {
    if (stop_requested) return std::unexpected{"interrupted"};
    auto dir = temp_dir::create("xtpm-bench-" + c.name);
    if (!dir) return std::unexpected{"temporary directory: " + dir.error().message()};
    c.dir = std::move(*dir);
    auto const state = c.dir.path() + "/state";
    auto const log = c.dir.path() + "/log";
    if (std::error_code ec; !fs::create_directory(state, ec)) return std::unexpected{"mkdir " + state};
    for (int attempt = 0;; ++attempt) {
        auto port = pick_port_pair();
        if (!port) return std::unexpected{"no free port: " + port.error().message()};
        [[maybe_unused]] int const t = ::truncate(log.c_str(), 0);  // keep only the last attempt's log
        auto proc = child_process::spawn(make_argv(*port, state), log, cpu);
        if (!proc) return std::unexpected{"cannot start: " + proc.error().message()};
        c.proc = std::move(*proc);
        auto fd = connect_when_ready(c.proc, *port, start_limit);
        if (fd) {
            c.conn = tcp_client{std::move(*fd)};
            return {};
        }
        bool const exited = to_errc(fd.error()) == errc::not_running;
        if (exited && attempt < 2 && !stop_requested) continue;  // most likely lost the port race
        std::string why = exited ? describe_status(c.proc.wait_status()) : fd.error().message();
        c.proc.stop();
        return std::unexpected{why + "; log:\n" + log_tail(log)};
    }
}

auto tcp_arg(std::uint16_t port) -> std::string {
    return "type=tcp,port=" + std::to_string(port) + ",bindaddr=127.0.0.1";
}

// The swtpm command line, which xtpm-vtpmd accepts unchanged.
auto swtpm_argv(std::string const& program, std::uint16_t port, std::string const& state) -> std::vector<std::string> {
    return {program, "socket", "--tpm2", "--server", tcp_arg(port), "--ctrl",
            tcp_arg(static_cast<std::uint16_t>(port + 1)), "--tpmstate", "dir=" + state,
            "--flags", "not-need-init,startup-clear"};
}

// `calls` timed round trips; every response must be well-formed and, from a
// real TPM, succeed. Samples go to `out` when given (warm-up passes none).
template <class Client>
auto run_batch(Client& cl, wire::bytes_view cmd, unsigned calls, std::vector<double>* out,
               std::size_t* last_size) -> outcome<> {
    using clock = std::chrono::steady_clock;
    for (unsigned i = 0; i < calls; ++i) {
        if (stop_requested) return std::unexpected{"interrupted"};
        auto const t0 = clock::now();
        auto rsp = cl.roundtrip(cmd);
        auto const t1 = clock::now();
        if (!rsp) return std::unexpected{rsp.error().message()};
        auto hdr = wire::parse_response(*rsp);
        if (!hdr) return std::unexpected{"malformed response: " + hdr.error().message()};
        if (hdr->rc != wire::tpm_rc::success) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "TPM rc 0x%X", static_cast<unsigned>(hdr->rc));
            return std::unexpected{std::string{buf}};
        }
        if (out) out->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (last_size) *last_size = rsp->size();
    }
    return {};
}

auto run_on(contestant& c, command_bytes const& cmd, unsigned calls, std::vector<double>* out,
            std::size_t* last_size = nullptr) -> outcome<> {
    return std::visit(
        [&](auto& cl) -> outcome<> {
            using T = std::decay_t<decltype(cl)>;
            if constexpr (std::is_same_v<T, std::monostate>) return std::unexpected{"no client"};
            else if constexpr (std::is_pointer_v<T>) return run_batch(*cl, cmd.bytes(), calls, out, last_size);
            else return run_batch(cl, cmd.bytes(), calls, out, last_size);
        },
        c.conn);
}

// The end of a server's log, for a failure report.
auto server_log(contestant const& c) -> std::string {
    if (c.dir.path().empty()) return {};
    return "; log:\n" + log_tail(c.dir.path() + "/log");
}

// `when` goes in the table; `why` (which may hold a log tail) goes to stderr once.
void mark_failed(contestant& c, std::string const& when, std::string const& why) {
    c.status = "failed " + when + " (see stderr)";
    c.failed = true;
    c.conn = std::monostate{};  // closes the connection
    c.proc.stop();
    std::fprintf(stderr, "xtpm-bench: %s failed %s: %s\n", c.name.c_str(), when.c_str(), why.c_str());
}

// --- report ------------------------------------------------------------------

// The machine-readable lines, printed as one block after the tables.
struct result_log {
    std::vector<std::string> lines;
    [[gnu::format(printf, 2, 3)]] void add(char const* f, ...) {  // 1 is `this`
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
    std::printf("\ntimes in us per call: client-side round trip over one persistent TCP connection;\n"
                "libtpms = one TPMLIB_Process call in the bench process. p50/p99 over all %u x %u calls,\n"
                "mean = median of the %u per-round means.\n\n",
                o.rounds, o.calls, o.rounds);
    std::printf("%-16s %-12s %9s %9s %9s %8s\n", "command", "contestant", "p50", "p99", "mean", "calls");
    for (auto cmd : all_commands) {
        bool first = true;
        for (auto& c : cs) {
            auto const label = first ? std::string{display_name(cmd)} : std::string{};
            first = false;
            auto const& s = c.of(cmd);
            if (s.rounds() != o.rounds) {
                std::printf("%-16s %-12s %s\n", label.c_str(), c.name.c_str(),
                            c.status.empty() ? "incomplete" : c.status.c_str());
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
    for (auto const& l : results.lines) std::printf("%s\n", l.c_str());
}

void on_signal(int) { stop_requested = 1; }

void install_signals() {
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked recv returns EINTR and the run winds down
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
}

auto today() -> std::string {
    std::time_t const t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::localtime(&t));
    return buf;
}

auto run(options const& o) -> int {
    install_signals();
    std::array<command_bytes, all_commands.size()> cmds{};
    for (auto c : all_commands) {
        auto b = build_command(c);
        if (!b) {
            std::fprintf(stderr, "xtpm-bench: encoding %s: %s\n", std::string{display_name(c)}.c_str(),
                         b.error().message().c_str());
            return 1;
        }
        cmds[static_cast<std::size_t>(c)] = *b;
    }

    // Placement: unpinned, a client/server pair on 2 vCPUs flips between
    // same-CPU (~8 us) and cross-CPU wake-ups (~100 us) from run to run, which
    // drowns a 1 us difference; one shared CPU measures the software path.
    std::optional<unsigned> server_cpu;
    std::string placement = "unpinned";
    if (o.pin != "none") {
        auto const cpus = allowed_cpus();
        if (cpus.empty()) return std::fprintf(stderr, "xtpm-bench: sched_getaffinity failed\n"), 1;
        unsigned const mine = o.cpu.value_or(cpus.back());
        if (std::ranges::find(cpus, mine) == cpus.end())
            return std::fprintf(stderr, "xtpm-bench: CPU %u is not allowed\n", mine), 2;
        if (auto p = pin_self(mine); !p)
            return std::fprintf(stderr, "xtpm-bench: pin to CPU %u: %s\n", mine, p.error().message().c_str()), 1;
        placement = "all on CPU " + std::to_string(mine);
        if (o.pin == "apart") {
            for (auto c : cpus)
                if (c != mine) { server_cpu = c; break; }
            if (!server_cpu) return std::fprintf(stderr, "xtpm-bench: --pin apart needs 2 CPUs\n"), 2;
            placement = "bench on CPU " + std::to_string(mine) + ", servers on CPU " + std::to_string(*server_cpu);
        }
    }

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

    auto const exe = self_exe();
    if (auto r = start_server(cs[1], server_cpu, [&](std::uint16_t p, std::string const&) {
            return std::vector<std::string>{exe.string(), "--floor-server", std::to_string(p)};
        }); !r)
        mark_failed(cs[1], "to start", r.error());

    if (auto sw = find_program(o.swtpm); !sw) {
        cs[2].status = "not found (" + o.swtpm + ")";
    } else if (auto r = start_server(cs[2], server_cpu, [&](std::uint16_t p, std::string const& st) {
                   return swtpm_argv(sw->string(), p, st);
               }); !r) {
        mark_failed(cs[2], "to start", r.error());
    }

    if (auto const vp = vtpmd_path(o); !executable(vp)) {
        cs[3].status = "not built";
        std::printf("xtpm-vtpmd: not built (%s)\n", vp.c_str());
    } else if (auto r = start_server(cs[3], server_cpu, [&](std::uint16_t p, std::string const& st) {
                   return swtpm_argv(vp.string(), p, st);
               }); !r) {
        mark_failed(cs[3], "to start", r.error());
    }

    std::printf("xtpm-bench %s: %u rounds x %u calls per command and contestant, round-robin; %u warm-up calls\n",
                today().c_str(), o.rounds, o.calls, o.warmup);
    std::printf("tree: CMAKE_BUILD_TYPE=%s, %s (xtpm-vtpmd must be optimised too for a fair run)\n",
                build_type.empty() ? "(none; bench at -O2)" : std::string{build_type}.c_str(),
                std::string{compiler}.c_str());
    auto const v = TPMLIB_GetVersion();
    std::printf("libtpms %u.%u.%u in-process; %u CPUs, %s; contestants:", (v >> 16) & 0xFF, (v >> 8) & 0xFF,
                v & 0xFF, std::thread::hardware_concurrency(), placement.c_str());
    for (auto& c : cs) {
        if (c.proc.pid() > 0) std::printf(" %s (pid %d)", c.name.c_str(), static_cast<int>(c.proc.pid()));
        else std::printf(" %s%s", c.name.c_str(), c.active() ? "" : c.failed ? " (failed)" : " (absent)");
    }
    std::printf("\n");

    // Warm-up, and a check that every contestant moves as many bytes as a real TPM.
    for (auto cmd : all_commands) {
        for (auto& c : cs) {
            if (!c.active() || stop_requested) continue;
            std::size_t size = 0;
            if (auto r = run_on(c, cmds[static_cast<std::size_t>(cmd)], std::max(o.warmup, 1u), nullptr, &size); !r)
                mark_failed(c, "in warm-up", std::string{display_name(cmd)} + ": " + r.error() + server_log(c));
            else if (size != response_size(cmd))
                std::printf("note: %s answers %s with %zu bytes, the floor with %zu\n", c.name.c_str(),
                            std::string{display_name(cmd)}.c_str(), size, response_size(cmd));
        }
    }

    for (unsigned r = 0; r < o.rounds && !stop_requested; ++r) {
        for (auto cmd : all_commands) {
            for (std::size_t k = 0; k < cs.size(); ++k) {
                auto& c = cs[(k + r) % cs.size()];  // rotate who goes first
                if (!c.active()) continue;
                auto& s = c.of(cmd);
                if (auto res = run_on(c, cmds[static_cast<std::size_t>(cmd)], o.calls, &s.new_round(o.calls)); !res) {
                    s.drop_last_round();
                    if (stop_requested) break;
                    mark_failed(c, "in round " + std::to_string(r + 1),
                                std::string{display_name(cmd)} + ": " + res.error() + server_log(c));
                }
            }
        }
    }
    if (stop_requested) {
        std::fprintf(stderr, "xtpm-bench: interrupted; stopping the servers\n");
        return 130;  // contestants' destructors stop every child by pid
    }

    for (auto& c : cs)
        if (c.proc.alive())
            if (auto m = read_memory(c.proc.pid())) c.memory = *m;
    print_report(cs, o);

    bool failed = false;
    for (auto& c : cs) failed = failed || c.failed;
    return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) {
        if (!o.error().empty()) std::fprintf(stderr, "xtpm-bench: %s\n", o.error().c_str());
        std::fputs(usage, o.error().empty() ? stdout : stderr);
        return o.error().empty() ? 0 : 2;
    }
    if (o->floor_port) {
        auto s = floor_server::create();
        if (!s) return 1;
        auto r = s->serve(*o->floor_port);
        std::fprintf(stderr, "floor server: %s\n", r ? "done" : r.error().message().c_str());
        return r ? 0 : 1;
    }
    return run(*o);
}
