// Shared by the TIS tests: scripted backends for the chip model (an echo TPM of
// either family, one that blocks until released), bounded polling, timing.
#pragma once

#include <xtpm/device/tis.hpp>
#include <xtpm/mmio/sim_tis.hpp>

#include "device/tpm_commands.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace xtpm::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// Answers every command with its own body under a response header: the tag of
// its family, size = the command's size, rc 0. A TPM 1.2 echo answers a 2.0
// tag with TPM_BADTAG, as a 1.2 chip does, so family probes work.
struct echo_backend {
    wire::family fam = wire::family::tpm2;
    auto execute(wire::bytes_view cmd, std::uint8_t) const -> result<std::vector<std::byte>> {
        std::vector<std::byte> r{cmd.begin(), cmd.end()};
        auto const tag = wire::load_be<wire::tpm_st>(cmd.first(2));
        if (fam == wire::family::tpm12 && wire::command_family(tag) != wire::family::tpm12) {
            r.resize(wire::header_size);
            (void)wire::error_response(wire::rc12::bad_tag, fam, r);
            return r;
        }
        wire::store_be(wire::bytes_span{r}.first(2),
                       fam == wire::family::tpm2 ? wire::tpm_st::no_sessions : wire::tpm_st::rsp_command);
        wire::store_be(wire::bytes_span{r}.subspan(6, 4), std::uint32_t{0});
        return r;
    }
};

// Echo, but only once the test calls release() (or after a 20 s safety limit,
// so that a failing test cannot hang the model's destructor).
struct gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    int entered = 0;
};
struct gated_backend {
    std::shared_ptr<gate> g = std::make_shared<gate>();
    echo_backend echo{};
    auto execute(wire::bytes_view cmd, std::uint8_t loc) const -> result<std::vector<std::byte>> {
        std::unique_lock lock{g->mu};
        ++g->entered;
        g->cv.notify_all();
        g->cv.wait_for(lock, 20s, [&] { return g->open; });
        return echo.execute(cmd, loc);
    }
    void release() const {
        std::lock_guard lock{g->mu};
        g->open = true;
        g->cv.notify_all();
    }
    [[nodiscard]] auto wait_entered(std::chrono::milliseconds limit = 5s) const -> bool {
        std::unique_lock lock{g->mu};
        return g->cv.wait_for(lock, limit, [&] { return g->entered > 0; });
    }
};
// Releases the gate on scope exit: a failed REQUIRE must not leave the worker blocked.
struct gate_guard {
    gated_backend const& b;
    ~gate_guard() { b.release(); }
};

// "80 01 00 00" -> bytes; spaces ignored.
inline auto hex(std::string_view s) -> bytes {
    bytes out;
    std::string digits;
    for (char c : s)
        if (c != ' ') digits.push_back(c);
    XTPM_ASSERT(digits.size() % 2 == 0);
    for (std::size_t i = 0; i < digits.size(); i += 2)
        out.push_back(static_cast<std::byte>(std::stoul(digits.substr(i, 2), nullptr, 16)));
    return out;
}

// Short bounds for hostile-chip tests: every failure lands well inside 10 s.
inline auto short_timeouts() -> proto::tis::timeouts {
    return {100ms, 100ms, 100ms, 100ms, 1000ms, 1000ms};
}

template <class Pred>
auto eventually(Pred pred, std::chrono::milliseconds limit = 5s) -> bool {
    auto const deadline = steady::now() + limit;
    while (!pred()) {
        if (steady::now() >= deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// A TPM 2.0 (or 1.2) command of exactly `size` bytes: header + a counting pattern.
// Below 10 bytes only tag and size field fit (a malformed command for the model).
inline auto sized_command(std::size_t size, wire::family fam = wire::family::tpm2) -> bytes {
    XTPM_ASSERT(size >= 6);
    bytes b(size);
    wire::store_be(wire::bytes_span{b}.first(2),
                   fam == wire::family::tpm2 ? wire::tpm_st::no_sessions : wire::tpm_st::rqu_command);
    wire::store_be(wire::bytes_span{b}.subspan(2, 4), static_cast<std::uint32_t>(size));
    if (size >= wire::header_size) wire::store_be(wire::bytes_span{b}.subspan(6, 4), std::uint32_t{0x17B});
    for (std::size_t i = wire::header_size; i < size; ++i) b[i] = static_cast<std::byte>(i * 7 + 3);
    return b;
}

// What echo_backend answers to `cmd`.
inline auto echoed(bytes const& cmd, wire::family fam = wire::family::tpm2) -> bytes {
    return echo_backend{fam}.execute(cmd, 0).value();
}

// Runs `cmd` on `dev` into a buffer of exactly `room` bytes (ASan sees overruns).
template <class Dev>
auto transact(Dev& dev, bytes const& cmd, std::size_t room = 4096) -> result<bytes> {
    auto v = wire::parse_command(cmd, dev.family(), dev.max_command_size());
    if (!v) return std::unexpected{v.error()};
    auto out = std::make_unique<std::byte[]>(room);
    auto r = dev.execute(*v, wire::bytes_span{out.get(), room});
    if (!r) return std::unexpected{r.error()};
    return bytes{r->bytes.begin(), r->bytes.end()};
}

}  // namespace xtpm::test
