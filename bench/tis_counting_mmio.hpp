// counting_mmio<M>: an mmio_window (docs/tis.md) that forwards every bus cycle
// to M and counts them by register (TIS 1.3 section 5: TPM_ACCESS, TPM_STS,
// TPM_DATA_FIFO), the bursts (runs of FIFO cycles between status reads), and
// the time and STS polls from tpmGo to the first status with dataAvail, which
// is where the model's worker thread and the TPM behind it do their work.
#pragma once

#include <xtpm/mmio/concepts.hpp>
#include <xtpm/proto/tis/registers.hpp>

#include <chrono>
#include <cstdint>

namespace xtpm::bench {

struct mmio_counts {
    std::uint64_t commands = 0;      // tpmGo writes
    std::uint64_t fifo_writes = 0;   // command bytes, one cycle each
    std::uint64_t fifo_reads = 0;    // response bytes, one cycle each
    std::uint64_t bursts = 0;        // runs of consecutive FIFO cycles
    std::uint64_t sts_reads = 0;     // every TPM_STS poll
    std::uint64_t exec_polls = 0;    // of which between tpmGo and dataAvail
    std::uint64_t sts_writes = 0;    // commandReady, tpmGo
    std::uint64_t access = 0;        // TPM_ACCESS reads and writes (locality)
    std::uint64_t other = 0;         // identification registers and the rest
    std::chrono::nanoseconds exec_time{};  // summed tpmGo -> dataAvail

    [[nodiscard]] auto total() const noexcept -> std::uint64_t {
        return fifo_writes + fifo_reads + sts_reads + sts_writes + access + other;
    }
};

template <mmio_window M>
class counting_mmio {
public:
    explicit counting_mmio(M inner) : m_{std::move(inner)} {}

    auto read8(std::uint8_t loc, std::uint16_t off) -> std::uint8_t {
        auto const v = m_.read8(loc, off);
        note(off, false, v);
        return v;
    }
    auto read32(std::uint8_t loc, std::uint16_t off) -> std::uint32_t {
        auto const v = m_.read32(loc, off);
        note(off, false, v);
        return v;
    }
    void write8(std::uint8_t loc, std::uint16_t off, std::uint8_t v) {
        note(off, true, v);
        m_.write8(loc, off, v);
    }
    void write32(std::uint8_t loc, std::uint16_t off, std::uint32_t v) {
        note(off, true, v);
        m_.write32(loc, off, v);
    }

    [[nodiscard]] auto counts() const noexcept -> mmio_counts const& { return c_; }
    void reset() noexcept { c_ = {}; }
    [[nodiscard]] auto inner() noexcept -> M& { return m_; }

private:
    using clock = std::chrono::steady_clock;

    void note(std::uint16_t off, bool write, std::uint32_t v) {
        namespace tis = proto::tis;
        bool const fifo = (off >= tis::reg::data_fifo && off < tis::reg::data_fifo + 4) ||
                          (off >= tis::reg::xdata_fifo && off < tis::reg::xdata_fifo + 4);
        if (fifo) {
            ++(write ? c_.fifo_writes : c_.fifo_reads);
            if (!in_burst_) ++c_.bursts;
            in_burst_ = true;
            return;
        }
        in_burst_ = false;
        if (off == tis::reg::access) {
            ++c_.access;
        } else if (off == tis::reg::sts && write) {
            ++c_.sts_writes;
            if (v & tis::sts::tpm_go) {
                ++c_.commands;
                executing_ = true;
                go_ = clock::now();
            }
        } else if (off == tis::reg::sts) {
            ++c_.sts_reads;
            if (!executing_) return;
            ++c_.exec_polls;
            constexpr auto done = tis::sts::sts_valid | tis::sts::data_avail;
            if ((v & done) == done && tis::sts::sane(v)) {
                executing_ = false;
                c_.exec_time += clock::now() - go_;
            }
        } else {
            ++c_.other;
        }
    }

    M m_;
    mmio_counts c_;
    bool in_burst_ = false;
    bool executing_ = false;
    clock::time_point go_{};
};

}  // namespace xtpm::bench
