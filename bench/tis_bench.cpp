// xtpm-bench-tis: commands per second through the TIS driver and the register
// model (tis_device -> sim_tis -> swtpm_backend) against the chardev path to the
// same swtpm (its data socket used as the raw TPM byte stream: write the
// command, read the response), TPM2_GetRandom(32) and TPM2_PCR_Read(16)
// (TPM 2.0 Part 3 sections 16.1, 22.4), interleaved in one run, with the bus
// cycles and context switches per command that explain the gap.
// docs/benchmarks.md, "The TIS driver: xtpm-bench-tis".
#include "cli.hpp"
#include "commands.hpp"
#include "placement.hpp"
#include "process.hpp"
#include "report.hpp"
#include "stats.hpp"
#include "tcp_client.hpp"
#include "tis_counting_mmio.hpp"

#include <xtpm/device/tis.hpp>
#include <xtpm/mmio/sim_tis.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace xtpm;
using namespace xtpm::bench;

constexpr char const* program = "xtpm-bench-tis";
constexpr auto start_limit = std::chrono::seconds{10};
constexpr unsigned batch_warmup = 10;  // untimed calls after each (re)connect
constexpr std::array bench_commands{command_id::get_random, command_id::pcr_read};

struct options : run_options {
    options() { rounds = 21; calls = 200; warmup = 100; }
    unsigned max_burst = 64;
    bool vary_burst = true;
};

// No --pin apart here: docs/benchmarks.md documents --pin same|none for this bench.
constexpr run_option_rules rules{.quick_calls = 50, .max_calls = 1'000'000, .pin_apart = false};

constexpr char const* usage =
    "usage: xtpm-bench-tis [--rounds N] [--calls N] [--warmup N] [--quick] [--pin same|none] [--cpu N]\n"
    "                      [--max-burst N] [--static-burst] [--swtpm PATH] [--verbose]\n"
    "  Compares, on one swtpm, TPM commands through the TIS driver and the register model (tis)\n"
    "  with the same commands written straight to swtpm's data socket (chardev), and the driver\n"
    "  over a model whose TPM answers at once (tis-null). --quick: 2 rounds x 50 calls.\n"
    "  --max-burst/--static-burst: the model's burstCount (default: drawn from 1-64 per read).\n";

auto parse_options(int argc, char** argv) -> outcome<options> {
    return parse_run_options<options>(argc, argv, rules, [](option_arg& a, options& o) -> outcome<bool> {
        if (a.name == "--max-burst") return a.store(o.max_burst, 1, 4096);
        if (a.name != "--static-burst") return false;
        o.vary_burst = false;
        return true;
    });
}

// The TPM behind tis-null: every command answered at once with a success
// response as long as swtpm's, so the driver, the model and its worker thread
// are all that is measured.
struct canned_backend {
    auto execute(wire::bytes_view cmd, std::uint8_t) -> result<std::vector<std::byte>> {
        auto const hdr = wire::decode_all<wire::command_header>(cmd.first(wire::header_size));
        auto const id = hdr ? command_for_code(hdr->code) : std::nullopt;
        auto const r = build_canned_response(wire::tpm_st::no_sessions, id ? response_size(*id) : wire::header_size);
        if (!r) return std::unexpected{r.error()};
        return std::vector<std::byte>(r->bytes().begin(), r->bytes().end());
    }
};

using swtpm_tis = tis_device<counting_mmio<sim_tis<swtpm_backend>>>;
using null_tis = tis_device<counting_mmio<sim_tis<canned_backend>>>;
static_assert(tpm_device<swtpm_tis> && tpm_device<null_tis>);

enum class kind : std::uint8_t { chardev, backend, tis, tis_null };

struct contestant {
    std::string name;
    kind k;
    std::array<series, bench_commands.size()> results{};  // client-side us per call
    std::array<series, bench_commands.size()> exec{};     // tis: tpmGo -> dataAvail, us per call
    std::array<mmio_counts, bench_commands.size()> counts{};
    std::array<std::uint64_t, bench_commands.size()> switches{};  // context switches in timed calls
};

// Context switches of every thread of `pid` so far (proc(5): /proc/PID/task/TID/status,
// voluntary_ctxt_switches + nonvoluntary_ctxt_switches); 0 if unreadable.
auto context_switches(pid_t pid) -> std::uint64_t {
    std::uint64_t n = 0;
    std::error_code ec;  // a thread that exits meanwhile ends the walk early, without throwing
    std::filesystem::directory_iterator it{"/proc/" + std::to_string(pid) + "/task", ec};
    for (; !ec && it != std::filesystem::directory_iterator{}; it.increment(ec)) {
        std::ifstream in{it->path() / "status"};
        std::string line;
        while (std::getline(in, line))
            if (line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:"))
                n += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    return n;
}

using clock_type = std::chrono::steady_clock;
auto us(clock_type::duration d) -> double { return std::chrono::duration<double, std::micro>(d).count(); }

class runner {
public:
    runner(options const& o, std::uint16_t port, pid_t swtpm) : o_{o}, port_{port}, swtpm_{swtpm} {}

    // One session: connect (swtpm serves one data connection at a time, so each
    // contestant reconnects for its batch), `warm` untimed calls, then `calls`
    // timed ones whose samples go to `c` when `timed`.
    auto session(contestant& c, std::size_t slot, unsigned warm, unsigned calls, bool timed) -> outcome<> {
        auto const bytes = commands_[slot].bytes();
        auto const view = wire::parse_command(bytes, wire::family::tpm2, 4096);
        if (!view) return std::unexpected{"command: " + view.error().message()};
        switch (c.k) {
        case kind::chardev: {
            auto fd = io::connect_to(io::tcp_endpoint{"127.0.0.1", port_});
            if (!fd) return std::unexpected{"connect to swtpm: " + fd.error().message()};
            tcp_client cl{std::move(*fd)};
            return batch(c, slot, warm, calls, timed, [&] { return cl.roundtrip(bytes); }, nullptr);
        }
        case kind::backend: {  // the model's own client of swtpm, called on this thread
            auto be = swtpm_backend::connect(io::tcp_endpoint{"127.0.0.1", port_});
            if (!be) return std::unexpected{"connect to swtpm: " + be.error().message()};
            std::vector<std::byte> last;
            return batch(c, slot, warm, calls, timed, [&]() -> result<wire::bytes_view> {
                auto r = be->execute(bytes, 0);
                if (!r) return std::unexpected{r.error()};
                last = std::move(*r);
                return wire::bytes_view{last};
            }, nullptr);
        }
        case kind::tis: {
            auto be = swtpm_backend::connect(io::tcp_endpoint{"127.0.0.1", port_});
            if (!be) return std::unexpected{"connect to swtpm: " + be.error().message()};
            auto dev = open_tis<swtpm_tis>(std::move(*be));
            if (!dev) return std::unexpected{dev.error()};
            return batch(c, slot, warm, calls, timed, [&] { return bytes_of(dev->execute(*view, scratch_)); },
                         &dev->mmio());
        }
        case kind::tis_null: {
            auto dev = open_tis<null_tis>(canned_backend{});
            if (!dev) return std::unexpected{dev.error()};
            return batch(c, slot, warm, calls, timed, [&] { return bytes_of(dev->execute(*view, scratch_)); },
                         &dev->mmio());
        }
        }
        return {};
    }

    auto prepare() -> outcome<> {
        for (std::size_t i = 0; i < bench_commands.size(); ++i) {
            auto b = build_command(bench_commands[i]);
            if (!b) return std::unexpected{"encode: " + b.error().message()};
            commands_[i] = *b;
        }
        return {};
    }

private:
    template <class Dev, class Backend>
    auto open_tis(Backend be) -> outcome<Dev> {
        sim_tis_options mo;
        mo.max_burst = static_cast<std::uint16_t>(o_.max_burst);
        mo.vary_burst = o_.vary_burst;
        tis_options to;
        to.family = wire::family::tpm2;
        auto dev = Dev::open(counting_mmio{sim_tis{std::move(be), mo}}, to);
        if (!dev) return std::unexpected{"tis_device::open: " + dev.error().message()};
        return std::move(*dev);
    }

    static auto bytes_of(result<wire::response_view> r) -> result<wire::bytes_view> {
        if (!r) return std::unexpected{r.error()};
        return r->bytes;
    }

    // `mmio` is the device's counting window, or nullptr for the chardev path.
    template <class Call, class MmioPtr>
    auto batch(contestant& c, std::size_t slot, unsigned warm, unsigned calls, bool timed, Call call, MmioPtr mmio)
        -> outcome<> {
        for (unsigned i = 0; i < warm; ++i)
            if (auto r = check_response(call()); !r) return r;
        if (!timed) return {};
        constexpr bool counted = !std::is_null_pointer_v<MmioPtr>;
        auto& samples = c.results[slot].new_round(calls);
        [[maybe_unused]] auto& exec = counted ? c.exec[slot].new_round(calls) : samples;
        if constexpr (counted) mmio->reset();
        // Every thread involved: the bench, the model's worker (alive until the session ends), swtpm.
        auto const switches0 = context_switches(::getpid()) + context_switches(swtpm_);
        for (unsigned i = 0; i < calls; ++i) {
            if (stop_requested) return std::unexpected{"interrupted"};
            [[maybe_unused]] std::chrono::nanoseconds before{};
            if constexpr (counted) before = mmio->counts().exec_time;
            auto const t0 = clock_type::now();
            auto rsp = call();
            auto const t1 = clock_type::now();
            if (auto r = check_response(rsp); !r) return r;
            samples.push_back(us(t1 - t0));
            if constexpr (counted) exec.push_back(us(mmio->counts().exec_time - before));
        }
        c.switches[slot] += context_switches(::getpid()) + context_switches(swtpm_) - switches0;
        if constexpr (counted) add(c.counts[slot], mmio->counts());
        return {};
    }

    static void add(mmio_counts& sum, mmio_counts const& n) {
        sum.commands += n.commands;
        sum.fifo_writes += n.fifo_writes;
        sum.fifo_reads += n.fifo_reads;
        sum.bursts += n.bursts;
        sum.sts_reads += n.sts_reads;
        sum.exec_polls += n.exec_polls;
        sum.sts_writes += n.sts_writes;
        sum.access += n.access;
        sum.other += n.other;
        sum.exec_time += n.exec_time;
    }

    options const& o_;
    std::uint16_t port_;
    pid_t swtpm_;
    std::array<command_bytes, bench_commands.size()> commands_{};
    std::array<std::byte, 4096> scratch_{};
};

void print_report(std::vector<contestant> const& cs, options const& o) {
    result_log results;
    std::printf("\ntimes in us per call, client side; p50/p99 over all %u x %u calls, mean = median of the\n"
                "per-round means; cmds/s = 1e6 / mean; switches = context switches per call, all threads of\n"
                "the bench (the model's worker included) and of swtpm.\n\n", o.rounds, o.calls);
    std::printf("%-15s %-10s %9s %9s %9s %7s %9s %9s\n", "command", "contestant", "p50", "p99", "mean", "calls", "cmds/s",
                "switches");
    for (std::size_t i = 0; i < bench_commands.size(); ++i) {
        auto const name = std::string{display_name(bench_commands[i])};
        auto const key = std::string{key_name(bench_commands[i])};
        for (std::size_t k = 0; k < cs.size(); ++k) {
            auto const& s = cs[k].results[i];
            if (s.rounds() != o.rounds) {
                std::printf("%-15s %-10s incomplete\n", k == 0 ? name.c_str() : "", cs[k].name.c_str());
                continue;
            }
            double const mean = s.mean_of_rounds();
            double const switches = static_cast<double>(cs[k].switches[i]) / static_cast<double>(s.count());
            std::printf("%-15s %-10s %9.2f %9.2f %9.2f %7zu %9.0f %9.2f\n", k == 0 ? name.c_str() : "",
                        cs[k].name.c_str(), s.p50(), s.p99(), mean, s.count(), 1e6 / mean, switches);
            results.add("RESULT name=%s.%s p50_us=%.3f p99_us=%.3f mean_us=%.3f cmds_per_s=%.0f", cs[k].name.c_str(),
                        key.c_str(), s.p50(), s.p99(), mean, 1e6 / mean);
        }
    }

    auto full = [&](series const& s) -> series const* { return s.rounds() == o.rounds ? &s : nullptr; };
    auto rounds_median = [](series const* s) -> std::optional<double> {  // of one series' per-round p50s
        if (s == nullptr) return std::nullopt;
        return median(s->round_p50s());
    };
    auto of = [&](kind k) -> contestant const& { return *std::ranges::find(cs, k, &contestant::k); };
    std::printf("\nthe gap, us (medians over rounds of per-round p50s, paired within each round):\n"
                "  tis - chardev = backend cost + hand-off + bus cycles (+ what the parts do to each other)\n"
                "  backend cost = backend - chardev: swtpm_backend (header, then the rest; a vector per response)\n"
                "  hand-off = tis-null's wait from tpmGo to dataAvail: the model's worker thread and back\n"
                "  bus cycles = tis minus its tpmGo-to-dataAvail wait: the register traffic itself\n\n");
    std::printf("%-15s %12s %12s %13s %10s %11s\n", "command", "tis/chardev", "tis-chardev", "backend cost",
                "hand-off", "bus cycles");
    for (std::size_t i = 0; i < bench_commands.size(); ++i) {
        auto const* ch = full(of(kind::chardev).results[i]);
        auto const* be = full(of(kind::backend).results[i]);
        auto const* ti = full(of(kind::tis).results[i]);
        auto const* ex = full(of(kind::tis).exec[i]);
        auto const minus = [](double a, double b) { return a - b; };
        auto ratio = paired_median([](double t, double c) { return t / c; }, ti, ch);
        auto gap = paired_median(minus, ti, ch);
        auto backend = paired_median(minus, be, ch);
        auto handoff = rounds_median(full(of(kind::tis_null).exec[i]));
        auto cycles = paired_median(minus, ti, ex);
        std::printf("%-15s %12s %12s %13s %10s %11s\n", std::string{display_name(bench_commands[i])}.c_str(),
                    fmt(ratio, "%.2f").c_str(), fmt(gap).c_str(), fmt(backend).c_str(), fmt(handoff).c_str(),
                    fmt(cycles).c_str());
        auto const key = std::string{key_name(bench_commands[i])};
        if (ratio) results.add("RESULT name=ratio_tis_chardev.%s value=%.3f", key.c_str(), *ratio);
        if (gap) results.add("RESULT name=tis_minus_chardev.%s value_us=%.3f", key.c_str(), *gap);
        if (backend) results.add("RESULT name=backend_minus_chardev.%s value_us=%.3f", key.c_str(), *backend);
        if (handoff) results.add("RESULT name=handoff.%s value_us=%.3f", key.c_str(), *handoff);
        if (cycles) results.add("RESULT name=bus_cycles.%s value_us=%.3f", key.c_str(), *cycles);
    }

    std::printf("\nbus cycles per command through tis (means over the timed calls; every FIFO cycle moves\n"
                "one byte; a burst is a run of FIFO cycles between two status reads)\n\n");
    std::printf("%-15s %7s %7s %7s %7s %6s %7s %7s %6s %7s %6s\n", "command", "total", "FIFO-w", "FIFO-r", "bursts",
                "B/bst", "STS-r", "exec-r", "STS-w", "ACCESS", "other");
    for (auto const* c : {&of(kind::tis), &of(kind::tis_null)}) {
        for (std::size_t i = 0; i < bench_commands.size(); ++i) {
            auto const& n = c->counts[i];
            if (n.commands == 0) continue;
            auto const per = [&](std::uint64_t v) { return static_cast<double>(v) / static_cast<double>(n.commands); };
            auto const label = std::string{display_name(bench_commands[i])} + (c->k == kind::tis ? "" : " null");
            double const burst = n.bursts ? static_cast<double>(n.fifo_writes + n.fifo_reads) / static_cast<double>(n.bursts) : 0;
            std::printf("%-15s %7.1f %7.1f %7.1f %7.1f %6.1f %7.1f %7.1f %6.1f %7.1f %6.1f\n", label.c_str(),
                        per(n.total()), per(n.fifo_writes), per(n.fifo_reads), per(n.bursts), burst, per(n.sts_reads),
                        per(n.exec_polls), per(n.sts_writes), per(n.access), per(n.other));
            results.add("RESULT name=mmio.%s.%s cycles=%.1f fifo=%.1f bursts=%.1f sts_reads=%.1f exec_polls=%.1f",
                        c->name.c_str(), std::string{key_name(bench_commands[i])}.c_str(), per(n.total()),
                        per(n.fifo_writes + n.fifo_reads), per(n.bursts), per(n.sts_reads), per(n.exec_polls));
        }
    }
    std::printf("\n");
    results.print();
}

auto run(options const& o) -> int {
    install_stop_handlers();

    // One CPU for the bench (driver and the model's worker) and swtpm: the
    // software path, without cross-CPU wake-ups (docs/benchmarks.md, Method).
    auto const pl = choose_placement(o.pin, o.cpu);
    if (!pl) return std::fprintf(stderr, "xtpm-bench-tis: %s\n", pl.error().what.c_str()), pl.error().status;
    if (pl->bench)
        if (auto p = pin_to(*pl->bench); !p) return std::fprintf(stderr, "xtpm-bench-tis: %s\n", p.error().c_str()), 1;

    auto dir = temp_dir::create("xtpm-bench-tis");
    if (!dir) return std::fprintf(stderr, "xtpm-bench-tis: temporary directory: %s\n", dir.error().message().c_str()), 1;
    auto const log = dir->path() + "/swtpm.log";
    child_process swtpm;
    std::uint16_t port = 0;
    for (int attempt = 0; attempt < 3 && swtpm.pid() <= 0; ++attempt) {
        auto p = pick_port_pair();
        if (!p) return std::fprintf(stderr, "xtpm-bench-tis: no free port\n"), 1;
        port = *p;
        auto proc = child_process::spawn(swtpm_argv(o.swtpm, port, dir->path()), log);
        if (!proc) {
            std::printf("xtpm-bench-tis: skipped: cannot start %s: %s\n", o.swtpm.c_str(), proc.error().message().c_str());
            return 77;
        }
        swtpm = std::move(*proc);
        if (!connect_when_ready(swtpm, port, start_limit)) swtpm.stop();  // most likely lost the port race
    }
    if (swtpm.pid() <= 0)
        return std::fprintf(stderr, "xtpm-bench-tis: swtpm did not start; log:\n%s\n", log_tail(log).c_str()), 1;

    std::printf("xtpm-bench-tis %s: %u rounds x %u calls per command and contestant, round-robin; %u warm-up\n"
                "swtpm pid %d on 127.0.0.1:%u; %s\n"
                "model: burstCount %s, stsValid drops for 1 read after each FIFO write, commands run on its worker thread\n"
                "contestants: chardev = swtpm's data socket as a raw TPM byte stream (write command, read response)\n"
                "             backend = swtpm_backend::execute on the bench thread (the model's client of swtpm)\n"
                "             tis = tis_device -> sim_tis -> swtpm_backend -> the same swtpm\n"
                "             tis-null = tis_device -> sim_tis -> a TPM that answers at once (driver + model alone)\n",
                today().c_str(), o.rounds, o.calls, o.warmup, static_cast<int>(swtpm.pid()), port,
                pl->describe("everything on CPU").c_str(),
                o.vary_burst ? ("drawn from 1-" + std::to_string(o.max_burst) + " per read").c_str()
                             : ("fixed at " + std::to_string(o.max_burst)).c_str());

    runner run{o, port, swtpm.pid()};
    if (auto r = run.prepare(); !r) return std::fprintf(stderr, "xtpm-bench-tis: %s\n", r.error().c_str()), 1;
    std::vector<contestant> cs{
        {"chardev", kind::chardev}, {"backend", kind::backend}, {"tis", kind::tis}, {"tis-null", kind::tis_null}};
    auto failed = [&](contestant const& c, std::string const& when, std::string const& why) {
        std::fprintf(stderr, "xtpm-bench-tis: %s failed %s: %s\nswtpm log:\n%s\n", c.name.c_str(), when.c_str(),
                     why.c_str(), log_tail(log).c_str());
        return 1;
    };
    for (std::size_t i = 0; i < bench_commands.size(); ++i)
        for (auto& c : cs)
            if (auto r = run.session(c, i, std::max(o.warmup, 1u), 0, false); !r)
                return failed(c, "in warm-up", r.error());
    for (unsigned r = 0; r < o.rounds && !stop_requested; ++r)
        for (std::size_t i = 0; i < bench_commands.size(); ++i)
            for (std::size_t k = 0; k < cs.size(); ++k) {
                auto& c = cs[(k + r) % cs.size()];  // rotate who goes first
                if (auto res = run.session(c, i, batch_warmup, o.calls, true); !res)
                    return stop_requested ? 130 : failed(c, "in round " + std::to_string(r + 1), res.error());
            }
    if (stop_requested) return 130;
    print_report(cs, o);
    if (o.verbose)
        for (auto const& c : cs)
            for (std::size_t i = 0; i < bench_commands.size(); ++i) {
                std::printf("%s %s per-round p50:", c.name.c_str(), std::string{key_name(bench_commands[i])}.c_str());
                for (double x : c.results[i].round_p50s()) std::printf(" %.1f", x);
                std::printf("\n");
            }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto o = parse_options(argc, argv);
    if (!o) return usage_status(program, usage, o.error());
    return run(*o);
}
