// The TIS FIFO driver: locality request/release, then one command per
// transmit(): commandReady, the command in burstCount chunks with Expect checked
// after stsValid, tpmGo, dataAvail, the 10-byte header, the rest by the
// header's size, the end checked (dataAvail clear), responseRetry on a bad read,
// commandReady to finish. TIS 1.3 section 5 (FIFO protocol, TPM_STS), PTP FIFO
// interface. Everything the chip returns is untrusted ("TPM Genie", NCC 2018):
// every wait is bounded, every count is clamped to what the caller's buffer holds.
#pragma once

#include <xtpm/mmio/concepts.hpp>
#include <xtpm/proto/tis/clock.hpp>
#include <xtpm/proto/tis/registers.hpp>
#include <xtpm/proto/tis/timeouts.hpp>

#include <atomic>
#include <string_view>

namespace xtpm::proto::tis {

// The step at which a command failed: errc is the class a caller acts on, the
// fault is what a log or a test names.
enum class fault : std::uint8_t {
    none,
    no_chip,             // TPM_ACCESS never valid, or TPM_DID_VID reads as a floating bus
    locality_timeout,    // not granted within TIMEOUT_A
    locality_lost,       // seized (or released) while we used it
    ready_timeout,       // commandReady not within TIMEOUT_B
    burst_timeout,       // burstCount stayed 0 for TIMEOUT_D
    sts_valid_timeout,   // stsValid not within TIMEOUT_C
    expect_early,        // Expect cleared before the last command byte
    expect_late,         // Expect still set after the last command byte
    response_timeout,    // dataAvail not within the command's duration
    response_too_small,  // header size field < 10
    response_too_large,  // header size field > the caller's buffer
    response_bad_tag,    // header tag is no response tag
    response_underrun,   // dataAvail cleared before the claimed size was read
    response_overrun,    // dataAvail still set after the claimed size
    canceled,            // the cancel flag was raised
};

constexpr auto to_errc(fault f) noexcept -> errc {
    switch (f) {
    case fault::locality_timeout:
    case fault::locality_lost: return errc::busy;
    case fault::expect_early:
    case fault::expect_late:
    case fault::response_overrun: return errc::size_mismatch;
    case fault::response_too_small: return errc::too_small;
    case fault::response_too_large: return errc::too_large;
    case fault::response_bad_tag: return errc::bad_tag;
    case fault::response_underrun: return errc::truncated;
    case fault::canceled: return errc::canceled;
    default: return errc::device_failure;
    }
}

constexpr auto name(fault f) noexcept -> std::string_view {
    constexpr std::string_view names[] = {
        "none", "no chip", "locality not granted", "locality lost", "commandReady timeout",
        "burstCount timeout", "stsValid timeout", "Expect cleared early", "Expect still set",
        "response timeout", "response size < 10", "response larger than buffer", "response tag",
        "response shorter than its size", "response longer than its size", "canceled"};
    static_assert(std::size(names) == static_cast<std::size_t>(fault::canceled) + 1);
    auto const i = static_cast<std::size_t>(f);
    return i < std::size(names) ? names[i] : "unknown";
}

// A response read may be repeated with responseRetry (a glitch on the bus);
// three times: a chip that answers inconsistently four times running is lying.
inline constexpr unsigned max_response_retries = 3;
// Polling: the first polls only yield (a model or a fast chip answers within
// microseconds), then sleep from 10 us doubling to 1 ms (Linux polls at 0.1-0.5 ms).
inline constexpr unsigned spin_polls = 16;
inline constexpr std::chrono::microseconds poll_floor{10};
inline constexpr std::chrono::microseconds poll_ceiling{1000};

constexpr auto backoff(unsigned attempt) noexcept -> std::chrono::microseconds {
    if (attempt < spin_polls) return std::chrono::microseconds{0};
    auto const shift = std::min(attempt - spin_polls, 7U);  // 10 us << 7 > 1 ms
    return std::min(poll_floor * (1U << shift), poll_ceiling);
}

// What any locality can read without owning the TPM.
struct chip_info {
    std::uint32_t did_vid = 0;          // vendor in 15:0, device in 31:16
    std::uint8_t rid = 0;
    std::uint32_t intf_capability = 0;
    std::uint32_t interface_id = 0;     // PTP only; all ones on TIS 1.3 chips
    [[nodiscard]] constexpr auto vendor_id() const noexcept -> std::uint16_t { return did_vid & 0xFFFF; }
    [[nodiscard]] constexpr auto device_id() const noexcept -> std::uint16_t {
        return static_cast<std::uint16_t>(did_vid >> 16);
    }
};

struct driver_config {
    std::uint8_t locality = 0;
    bool seize = false;  // take the TPM with Seize (honoured only above the active locality)
    timeouts limits{};
};

// One driver object per command or per device; it owns no state across commands
// except last_fault(). The cancel flag (optional) may be raised from any thread.
template <mmio_window Mmio, tis_clock Clock>
class driver {
public:
    driver(Mmio& mmio, Clock& clock, driver_config const& cfg, std::atomic<bool> const* cancel = nullptr) noexcept
        : mmio_{mmio}, clock_{clock}, cfg_{cfg}, cancel_{cancel} {
        XTPM_ASSERT(cfg.locality < localities);
    }

    // Identification registers; waits up to TIMEOUT_A for tpmRegValidSts.
    auto probe() -> result<chip_info> {
        auto const deadline = clock_.now() + cfg_.limits.a;
        for (unsigned k = 0;; ++k) {
            auto const a = read_access();
            chip_info info{mmio_.read32(loc(), reg::did_vid), mmio_.read8(loc(), reg::rid),
                           mmio_.read32(loc(), reg::intf_capability), mmio_.read32(loc(), reg::interface_id)};
            bool const floating = info.did_vid == 0xFFFFFFFF || info.did_vid == 0;
            if (a && (*a & access::reg_valid_sts) && !floating) return info;
            if (clock_.now() >= deadline) return failed(fault::no_chip);
            clock_.pause(backoff(k));
        }
    }

    // Ours after at most TIMEOUT_A, or errc::busy (the request is withdrawn).
    auto request_locality() -> result<void> {
        auto const a = read_access();
        if (a && (*a & access::been_seized)) mmio_.write8(loc(), reg::access, access::been_seized);  // stale
        if (active(a)) return {};
        mmio_.write8(loc(), reg::access, cfg_.seize ? access::seize : access::request_use);
        auto const deadline = clock_.now() + cfg_.limits.a;
        for (unsigned k = 0;; ++k) {
            if (locality_active()) return {};
            auto const f = canceled() ? fault::canceled : fault::locality_timeout;
            if (f == fault::canceled || clock_.now() >= deadline) {
                release_locality();  // a write of activeLocality also drops a pending request
                return failed(f);
            }
            clock_.pause(backoff(k));
        }
    }

    void release_locality() noexcept { mmio_.write8(loc(), reg::access, access::active_locality); }

    [[nodiscard]] auto locality_active() -> bool {
        auto const a = read_access();
        return active(a) && !(*a & access::been_seized);
    }

    // One command, the locality already ours. The response lands in `out` (the
    // caller's buffer bounds it) and the returned view aliases `out`. `duration`
    // bounds the execution (duration_for). On failure the chip is sent back to
    // Ready with commandReady, which also aborts a running command.
    auto transmit(wire::bytes_view cmd, wire::bytes_span out, milliseconds duration) -> result<wire::bytes_view> {
        fault_ = fault::none;
        if (cmd.size() < wire::header_size) return fail(errc::too_small);  // never sent: a caller bug
        if (out.size() < wire::header_size) return fail(errc::buffer_full);
        auto r = run(cmd, out, duration);
        if (!r) abort();
        return r;
    }

    // commandReady: abort a command in flight or drop a response (TIS 1.3: a
    // write of commandReady during Execution aborts it).
    void abort() noexcept { mmio_.write8(loc(), reg::sts, static_cast<std::uint8_t>(sts::command_ready)); }

    [[nodiscard]] auto last_fault() const noexcept -> fault { return fault_; }

private:
    auto run(wire::bytes_view cmd, wire::bytes_span out, milliseconds duration) -> result<wire::bytes_view> {
        if (auto r = make_ready(); !r) return std::unexpected{r.error()};
        if (auto r = send(cmd); !r) return std::unexpected{r.error()};
        mmio_.write8(loc(), reg::sts, static_cast<std::uint8_t>(sts::tpm_go));
        auto const done = wait_sts(duration, fault::response_timeout,
                                   [](std::uint32_t v) { return has(v, sts::sts_valid | sts::data_avail); });
        if (!done) return std::unexpected{done.error()};
        for (unsigned attempt = 0;; ++attempt) {
            auto r = receive(out);
            if (r) {
                if (!locality_active()) return failed(fault::locality_lost);  // the bytes may be another's
                abort();  // commandReady: response consumed, the TPM goes Ready
                return r;
            }
            if (!retryable(fault_) || attempt == max_response_retries) return r;
            mmio_.write8(loc(), reg::sts, static_cast<std::uint8_t>(sts::response_retry));
        }
    }

    auto make_ready() -> result<void> {
        auto const v = mmio_.read32(loc(), reg::sts);
        if (sts::sane(v) && has(v, sts::command_ready)) return {};
        abort();
        auto r = wait_sts(cfg_.limits.b, fault::ready_timeout,
                          [](std::uint32_t s) { return has(s, sts::command_ready); });
        if (!r) return std::unexpected{r.error()};
        return {};
    }

    // In burstCount chunks, never more than is left; after each chunk Expect
    // (read only once stsValid is set) must say "more" until the last byte.
    auto send(wire::bytes_view cmd) -> result<void> {
        std::size_t sent = 0;
        while (sent < cmd.size()) {
            auto const b = wait_burst();
            if (!b) return std::unexpected{b.error()};
            auto const n = std::min<std::size_t>(*b, cmd.size() - sent);
            for (auto const byte : cmd.subspan(sent, n))
                mmio_.write8(loc(), reg::data_fifo, std::to_integer<std::uint8_t>(byte));
            sent += n;
            auto const v = wait_valid();
            if (!v) return std::unexpected{v.error()};
            bool const expect = has(*v, sts::expect);
            if (sent < cmd.size() && !expect) return failed(fault::expect_early);
            if (sent == cmd.size() && expect) return failed(fault::expect_late);
        }
        return {};
    }

    // Header first, then the rest by the header's size, each chunk clamped to
    // burstCount and to what is left; then dataAvail must be clear.
    auto receive(wire::bytes_span out) -> result<wire::bytes_view> {
        std::size_t got = 0;
        std::size_t want = wire::header_size;
        while (got < want) {
            auto const v = wait_valid();
            if (!v) return std::unexpected{v.error()};
            if (!has(*v, sts::data_avail)) return failed(fault::response_underrun);
            auto const b = sts::burst_count(*v) != 0 ? result<std::uint16_t>{sts::burst_count(*v)} : wait_burst();
            if (!b) return std::unexpected{b.error()};
            auto const n = std::min<std::size_t>(*b, want - got);
            for (auto& byte : out.subspan(got, n)) byte = std::byte{mmio_.read8(loc(), reg::data_fifo)};
            got += n;
            if (want == wire::header_size && got == want) {
                auto const size = wire::load_be<std::uint32_t>(out.subspan(2, 4));
                if (size < wire::header_size) return failed(fault::response_too_small);
                if (size > out.size()) return failed(fault::response_too_large);
                if (!wire::response_family(wire::load_be<wire::tpm_st>(out.first(2))))
                    return failed(fault::response_bad_tag);
                want = size;
            }
        }
        auto const v = wait_valid();
        if (!v) return std::unexpected{v.error()};
        if (has(*v, sts::data_avail)) return failed(fault::response_overrun);
        return out.first(want);
    }

    auto wait_valid() -> result<std::uint32_t> {
        return wait_sts(cfg_.limits.c, fault::sts_valid_timeout,
                        [](std::uint32_t v) { return has(v, sts::sts_valid); });
    }
    auto wait_burst() -> result<std::uint16_t> {
        auto const v = wait_sts(cfg_.limits.d, fault::burst_timeout,
                                [](std::uint32_t s) { return sts::burst_count(s) != 0; });
        if (!v) return std::unexpected{v.error()};
        return sts::burst_count(*v);
    }

    // Polls TPM_STS until `pred` holds. A status that cannot be a register value
    // (read-zero bits set: another locality took the TPM, or no chip) is not
    // trusted; if the locality is gone the wait ends at once.
    template <class Pred>
    auto wait_sts(milliseconds limit, fault on_timeout, Pred pred) -> result<std::uint32_t> {
        auto const deadline = clock_.now() + limit;
        for (unsigned k = 0;; ++k) {
            auto const v = mmio_.read32(loc(), reg::sts);
            if (sts::sane(v)) {
                if (pred(v)) return v;
            } else if (!locality_active()) {
                return failed(fault::locality_lost);
            }
            if (canceled()) return failed(fault::canceled);
            if (clock_.now() >= deadline) return failed(on_timeout);
            clock_.pause(backoff(k));
        }
    }

    static constexpr auto retryable(fault f) noexcept -> bool {
        return f == fault::response_too_small || f == fault::response_too_large || f == fault::response_bad_tag ||
               f == fault::response_underrun || f == fault::response_overrun;
    }
    static constexpr auto has(std::uint32_t v, std::uint32_t bits) noexcept -> bool { return (v & bits) == bits; }
    static constexpr auto active(std::optional<std::uint8_t> a) noexcept -> bool {
        return a && has(*a, access::reg_valid_sts | access::active_locality);
    }

    auto read_access() -> std::optional<std::uint8_t> {
        auto const a = mmio_.read8(loc(), reg::access);
        if (a & access::read_zero) return std::nullopt;
        return a;
    }
    auto failed(fault f) -> std::unexpected<std::error_code> {
        fault_ = f;
        return fail(to_errc(f));
    }
    [[nodiscard]] auto canceled() const noexcept -> bool {
        return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed);
    }
    [[nodiscard]] auto loc() const noexcept -> std::uint8_t { return cfg_.locality; }

    Mmio& mmio_;
    Clock& clock_;
    driver_config cfg_;
    std::atomic<bool> const* cancel_;
    fault fault_ = fault::none;
};

}  // namespace xtpm::proto::tis
