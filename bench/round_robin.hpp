// The interleaved run of xtpm-bench and xtpm-tpmif-bench (docs/benchmarks.md, Method): a
// contestant (a client answering roundtrip(bytes) -> result<bytes_view>, the server process
// and state directory it may own, its samples per command, why it stopped), starting a TCP
// server for one, and the two loops: the warm-up, then rounds in which every active
// contestant runs every command once and the one that goes first rotates, so that the drift
// of a noisy VM hits all of them (toolchain.md 7.12). Which contestants exist is each bench's.
#pragma once

#include "cli.hpp"
#include "commands.hpp"
#include "process.hpp"
#include "stats.hpp"
#include "tcp_client.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace xtpm::bench {

using command_set = std::array<command_bytes, all_commands.size()>;

inline auto build_commands() -> outcome<command_set> {
    command_set out{};
    for (auto c : all_commands) {
        auto b = build_command(c);
        if (!b) return std::unexpected{"encoding " + std::string{display_name(c)} + ": " + b.error().message()};
        out[static_cast<std::size_t>(c)] = *b;
    }
    return out;
}

// `calls` timed round trips; every response must be well-formed and succeed. Samples go to
// `out` when given (warm-up passes none); `last_size` gets the last response's size.
template <class Client>
auto run_batch(Client& cl, wire::bytes_view cmd, unsigned calls, std::vector<double>* out, std::size_t* last_size)
    -> outcome<> {
    using clock = std::chrono::steady_clock;
    for (unsigned i = 0; i < calls; ++i) {
        if (stop_requested) return std::unexpected{"interrupted"};
        auto const t0 = clock::now();
        auto rsp = cl.roundtrip(cmd);
        auto const t1 = clock::now();
        if (auto ok = check_response(rsp); !ok) return ok;
        if (out) out->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (last_size) *last_size = rsp->size();
    }
    return {};
}

// Clients: the alternatives besides "none"; a pointer alternative is a client owned elsewhere.
template <class... Clients>
struct contestant {
    std::string name;
    std::string status;   // empty while it runs; else why it did not (complete)
    bool failed = false;  // a start-up or run failure: the bench exits 1
    std::variant<std::monostate, Clients...> conn;
    temp_dir dir;         // a server's state and its log (dir/log)
    child_process proc;   // after dir: stopped before its state directory is removed
    std::array<series, all_commands.size()> results;
    std::optional<memory_kib> memory;  // a daemon's, read after the run

    [[nodiscard]] auto active() const -> bool { return status.empty(); }
    auto of(command_id c) -> series& { return results[static_cast<std::size_t>(c)]; }
    [[nodiscard]] auto of(command_id c) const -> series const& { return results[static_cast<std::size_t>(c)]; }

    auto run(wire::bytes_view cmd, unsigned calls, std::vector<double>* out, std::size_t* last_size = nullptr)
        -> outcome<> {
        return std::visit(
            [&](auto& cl) -> outcome<> {
                using T = std::decay_t<decltype(cl)>;
                if constexpr (std::is_same_v<T, std::monostate>) return std::unexpected{"no client"};
                else if constexpr (std::is_pointer_v<T>) return run_batch(*cl, cmd, calls, out, last_size);
                else return run_batch(cl, cmd, calls, out, last_size);
            },
            conn);
    }

    // The end of its server's log, for a failure report; empty without one.
    [[nodiscard]] auto server_log() const -> std::string {
        if (dir.path().empty()) return {};
        return "; log:\n" + log_tail(dir.path() + "/log");
    }

    // `when` goes in the table; `why` (which may hold a log tail) goes to stderr once.
    void mark_failed(char const* program, std::string const& when, std::string const& why) {
        status = "failed " + when + " (see stderr)";
        failed = true;
        conn = std::monostate{};  // closes the connection
        proc.stop();
        std::fprintf(stderr, "%s: %s failed %s: %s\n", program, name.c_str(), when.c_str(), why.c_str());
    }
};

// Start a TCP server for `c` in a private directory `<prefix>-<name>.XXXXXX` (state/ and
// log) and connect to it. make_argv(port, state_dir) builds the command line; a server
// that exits before it listens most likely lost the race for its port: another, 3 tries.
template <class C, class MakeArgv>
auto start_server(C& c, std::string_view prefix, std::optional<unsigned> cpu, std::chrono::milliseconds limit,
                  MakeArgv make_argv) -> outcome<> {
    if (stop_requested) return std::unexpected{"interrupted"};
    auto dir = temp_dir::create(std::string{prefix} + "-" + c.name);
    if (!dir) return std::unexpected{"temporary directory: " + dir.error().message()};
    c.dir = std::move(*dir);
    auto const state = c.dir.path() + "/state";
    auto const log = c.dir.path() + "/log";
    if (std::error_code ec; !std::filesystem::create_directory(state, ec)) return std::unexpected{"mkdir " + state};
    for (int attempt = 0;; ++attempt) {
        auto port = pick_port_pair();
        if (!port) return std::unexpected{"no free port: " + port.error().message()};
        [[maybe_unused]] int const t = ::truncate(log.c_str(), 0);  // keep only the last attempt's log
        auto proc = child_process::spawn(make_argv(*port, state), log, cpu);
        if (!proc) return std::unexpected{"cannot start: " + proc.error().message()};
        c.proc = std::move(*proc);
        auto fd = connect_when_ready(c.proc, *port, limit);
        if (fd) {
            c.conn = tcp_client{std::move(*fd)};
            return {};
        }
        bool const exited = to_errc(fd.error()) == errc::not_running;
        if (exited && attempt < 2 && !stop_requested) continue;
        std::string why = exited ? describe_status(c.proc.wait_status()) : fd.error().message();
        c.proc.stop();
        return std::unexpected{why + "; log:\n" + log_tail(log)};
    }
}

// Warm-up: `calls` (at least one) untimed calls per command on every active contestant. With
// `note_sizes`, an answer whose size differs from a real TPM's (the floors') is printed as a
// `note:`, so that the contestants are seen to move the same bytes.
template <class C>
void warm_up(char const* program, std::vector<C>& cs, command_set const& cmds, unsigned calls, bool note_sizes) {
    for (auto cmd : all_commands)
        for (auto& c : cs) {
            if (!c.active() || stop_requested) continue;
            std::size_t size = 0;
            if (auto r = c.run(cmds[static_cast<std::size_t>(cmd)].bytes(), std::max(calls, 1u), nullptr, &size); !r)
                c.mark_failed(program, "in warm-up",
                              std::string{display_name(cmd)} + ": " + r.error() + c.server_log());
            else if (note_sizes && size != response_size(cmd))
                std::printf("note: %s answers %s with %zu bytes, the floor with %zu\n", c.name.c_str(),
                            std::string{display_name(cmd)}.c_str(), size, response_size(cmd));
        }
}

// `rounds` rounds of `calls` timed calls per command and active contestant; a contestant
// that fails is out for the rest of the run, and a stop request ends it.
template <class C>
void run_rounds(char const* program, std::vector<C>& cs, command_set const& cmds, unsigned rounds, unsigned calls) {
    for (unsigned r = 0; r < rounds && !stop_requested; ++r)
        for (auto cmd : all_commands)
            for (std::size_t k = 0; k < cs.size(); ++k) {
                auto& c = cs[(k + r) % cs.size()];  // rotate who goes first
                if (!c.active()) continue;
                auto& s = c.of(cmd);
                if (auto res = c.run(cmds[static_cast<std::size_t>(cmd)].bytes(), calls, &s.new_round(calls)); !res) {
                    s.drop_last_round();
                    if (stop_requested) break;
                    c.mark_failed(program, "in round " + std::to_string(r + 1),
                                  std::string{display_name(cmd)} + ": " + res.error() + c.server_log());
                }
            }
}

}  // namespace xtpm::bench
