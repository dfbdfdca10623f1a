// What the benches print after a run: the RESULT lines, collected while the tables print
// and printed as one block after them, where scripts grep them (docs/benchmarks.md); the
// heading's date; and, for the round-robin benches (round_robin.hpp), the first table -
// p50, p99, mean and calls per command and contestant - with its RESULT lines and, with
// -v, each round's p50. Each bench's derived tables stay in its own source.
#pragma once

#include "commands.hpp"
#include "stats.hpp"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace xtpm::bench {

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
    void print() const {
        for (auto const& l : lines) std::printf("%s\n", l.c_str());
    }
};

// Local time to the minute, for the heading.
inline auto today() -> std::string {
    std::time_t const t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::localtime(&t));
    return buf;
}

// The samples of contestant `name` for `cmd` if it ran all `rounds`; else nullptr, which
// paired_median turns into a "-" in the derived tables.
template <class C>
auto complete_series(std::vector<C> const& cs, std::string_view name, command_id cmd, unsigned rounds)
    -> series const* {
    for (auto const& c : cs)
        if (c.name == name && c.of(cmd).rounds() == rounds) return &c.of(cmd);
    return nullptr;
}

// The first table, command by command; a contestant without all `rounds` shows its status.
template <class C>
void print_latency_table(std::vector<C> const& cs, unsigned rounds, bool verbose, result_log& results) {
    std::printf("%-16s %-12s %9s %9s %9s %8s\n", "command", "contestant", "p50", "p99", "mean", "calls");
    for (auto cmd : all_commands) {
        bool first = true;
        for (auto const& c : cs) {
            auto const label = first ? std::string{display_name(cmd)} : std::string{};
            first = false;
            auto const& s = c.of(cmd);
            if (s.rounds() != rounds) {
                std::printf("%-16s %-12s %s\n", label.c_str(), c.name.c_str(),
                            c.status.empty() ? "incomplete" : c.status.c_str());
                continue;
            }
            std::printf("%-16s %-12s %9.2f %9.2f %9.2f %8zu\n", label.c_str(), c.name.c_str(), s.p50(), s.p99(),
                        s.mean_of_rounds(), s.count());
            results.add("RESULT name=%s.%s p50_us=%.3f p99_us=%.3f mean_us=%.3f calls=%zu", c.name.c_str(),
                        std::string{key_name(cmd)}.c_str(), s.p50(), s.p99(), s.mean_of_rounds(), s.count());
            if (verbose) {
                std::printf("%-29s per-round p50:", "");
                for (double x : s.round_p50s()) std::printf(" %.2f", x);
                std::printf("\n");
            }
        }
    }
}

}  // namespace xtpm::bench
