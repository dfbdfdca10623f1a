// The Mmio policy of the TIS driver: 8- and 32-bit register accesses at
// (locality, offset) in the five 4 KiB locality windows of a TIS FIFO TPM
// (TIS 1.3 section 5, PTP FIFO interface). Models: devmem_mmio (the physical
// window), sim_tis<Backend> (a register-level chip model). Valid expressions:
// docs/tis.md.
#pragma once

#include <concepts>
#include <cstdint>

namespace xtpm {

// An mmio_window reads and writes the registers of one TIS chip.
// Not checked by the compiler:
//  - locality <= 4 and offset + width <= 0x1000, offset aligned to the width for
//    32-bit accesses (a caller bug otherwise);
//  - an access is one bus cycle of that width: a 32-bit read of TPM_STS is one
//    snapshot, a 32-bit access to the FIFO moves 4 bytes, lowest address first;
//  - reads can have side effects (the FIFO) and never fail: an absent chip
//    reads as all ones, which the driver treats as noise;
//  - values are the register's little-endian value, already in host order.
template <class M>
concept mmio_window = requires(M& m, std::uint8_t locality, std::uint16_t offset, std::uint8_t v8, std::uint32_t v32) {
    { m.read8(locality, offset) } -> std::same_as<std::uint8_t>;
    { m.read32(locality, offset) } -> std::same_as<std::uint32_t>;
    { m.write8(locality, offset, v8) } -> std::same_as<void>;
    { m.write32(locality, offset, v32) } -> std::same_as<void>;
};

}  // namespace xtpm
