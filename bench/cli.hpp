// Small helpers the bench programs share: the options every bench takes (how much to run,
// where, which swtpm) parsed one way, with each program's own options added by a callback;
// strict number parsing; the usage exit; table cells; finding a program (swtpm, the role
// binaries). Orchestration errors are only ever printed, so they carry text (`outcome`).
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <sched.h>
#include <unistd.h>

namespace xtpm::bench {

template <class T = void>
using outcome = std::expected<T, std::string>;

// A decimal in [lo, hi], digits only; nullopt otherwise.
inline auto parse_uint(std::string_view s, unsigned lo, unsigned hi) -> std::optional<unsigned> {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
    return v;
}

// The options of every bench. The defaults of the first three are each program's (set by
// its options' constructor); --quick is 2 rounds of rules.quick_calls, 20 warm-up calls.
struct run_options {
    unsigned rounds = 0;
    unsigned calls = 0;   // timed calls per command, contestant and round
    unsigned warmup = 0;  // untimed calls per command and contestant before round 1
    bool verbose = false;         // also print each round's p50
    std::string pin = "same";     // same | apart | none (placement.hpp)
    std::optional<unsigned> cpu;  // the bench's CPU; default: the last one allowed
    std::string swtpm = "swtpm";
};

// What differs between the benches in how they take them.
struct run_option_rules {
    unsigned quick_calls;  // per command, contestant and round in a --quick smoke run
    unsigned max_calls;    // the bound of --calls
    bool pin_apart;        // whether --pin apart is offered (xtpm-bench-tis: no)
};

// The option at hand while parsing: its name, and its value from the next argument.
class option_arg {
public:
    option_arg(std::string_view option, int& i, int argc, char** argv)
        : name{option}, i_{i}, argc_{argc}, argv_{argv} {}

    std::string_view const name;

    auto value() -> outcome<std::string_view> {
        if (i_ + 1 >= argc_) return std::unexpected{std::string{name} + " needs a value"};
        return std::string_view{argv_[++i_]};
    }
    auto number(unsigned lo, unsigned hi) -> outcome<unsigned> {
        auto v = value();
        if (!v) return std::unexpected{v.error()};
        auto n = parse_uint(*v, lo, hi);
        if (!n) return std::unexpected{std::string{name} + ": expected a number in [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "]"};
        return *n;
    }
    // The value into `out`: what an option handler returns for an option it took.
    auto store(std::string& out) -> outcome<bool> {
        auto v = value();
        if (!v) return std::unexpected{v.error()};
        out = std::string{*v};
        return true;
    }
    template <class T>  // unsigned or std::optional<unsigned>
    auto store(T& out, unsigned lo, unsigned hi) -> outcome<bool> {
        auto n = number(lo, hi);
        if (!n) return std::unexpected{n.error()};
        out = *n;
        return true;
    }

private:
    int& i_;
    int argc_;
    char** argv_;
};

// A program's Options (derived from run_options) from argv: the shared ones by `rules`, every
// other option through own(option_arg&, Options&) -> outcome<bool>, false meaning not one of
// its options. --help/-h is an empty error: print the usage, exit 0 (usage_status).
template <class Options, class Own>
auto parse_run_options(int argc, char** argv, run_option_rules const& rules, Own own) -> outcome<Options> {
    Options o;
    for (int i = 1; i < argc; ++i) {
        option_arg a{argv[i], i, argc, argv};
        outcome<bool> took = true;
        if (a.name == "--rounds") took = a.store(o.rounds, 1, 1000);
        else if (a.name == "--calls") took = a.store(o.calls, 1, rules.max_calls);
        else if (a.name == "--warmup") took = a.store(o.warmup, 0, 1'000'000);
        else if (a.name == "--quick") { o.rounds = 2; o.calls = rules.quick_calls; o.warmup = 20; }
        else if (a.name == "--verbose" || a.name == "-v") o.verbose = true;
        else if (a.name == "--cpu") took = a.store(o.cpu, 0, CPU_SETSIZE - 1);
        else if (a.name == "--swtpm") took = a.store(o.swtpm);
        else if (a.name == "--pin") {
            auto v = a.value();
            if (!v) return std::unexpected{v.error()};
            if (*v != "same" && *v != "none" && (*v != "apart" || !rules.pin_apart))
                return std::unexpected{rules.pin_apart ? "--pin: same, apart or none" : "--pin: same or none"};
            o.pin = std::string{*v};
        } else if (a.name == "--help" || a.name == "-h") return std::unexpected{std::string{}};
        else took = own(a, o);
        if (!took) return std::unexpected{took.error()};
        if (!*took) return std::unexpected{"unknown option " + std::string{a.name}};
    }
    return o;
}

// main()'s answer to a failed parse: the error and the usage on stderr, status 2;
// for --help the usage on stdout, status 0.
inline auto usage_status(char const* program, char const* usage, std::string const& error) -> int {
    if (!error.empty()) std::fprintf(stderr, "%s: %s\n", program, error.c_str());
    std::fputs(usage, error.empty() ? stdout : stderr);
    return error.empty() ? 0 : 2;
}

// A table cell: the value in printf format `f`, or "-" when absent.
inline auto fmt(std::optional<double> v, char const* f = "%.2f") -> std::string {
    if (!v) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, f, *v);
    return buf;
}

inline auto executable(std::filesystem::path const& p) -> bool {
    return !p.empty() && ::access(p.c_str(), X_OK) == 0;
}

// The running binary, for paths into its build tree; empty if /proc cannot say.
inline auto self_exe() -> std::filesystem::path {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::filesystem::path{} : p;
}

// A command name resolved through $PATH, or a path taken as is.
inline auto find_program(std::string const& name) -> std::optional<std::filesystem::path> {
    namespace fs = std::filesystem;
    if (name.find('/') != std::string::npos) return executable(name) ? std::optional<fs::path>{name} : std::nullopt;
    char const* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/bin:/bin";
    while (!rest.empty()) {
        auto const colon = rest.find(':');
        fs::path const dir{std::string{rest.substr(0, colon)}};
        rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
        if (executable(dir / name)) return dir / name;
    }
    return std::nullopt;
}

}  // namespace xtpm::bench
