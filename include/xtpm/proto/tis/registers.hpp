// The TIS FIFO register map: one 4 KiB window per locality (0-4) from the base
// (0xFED40000 on a PC), register offsets inside a window, and the bits of
// TPM_ACCESS, TPM_STS, TPM_INT_*, TPM_INTF_CAPABILITY and TPM_INTERFACE_ID.
// TCG PC Client Specific TPM Interface Specification (TIS) 1.3, section 5
// (register space, TPM_ACCESS, TPM_STS), and the PC Client Platform TPM Profile
// (PTP) for TPM 2.0, FIFO interface (adds tpmFamily, commandCancel, INTERFACE_ID).
#pragma once

#include <xtpm/wire/types.hpp>

#include <cstdint>
#include <optional>

namespace xtpm::proto::tis {

inline constexpr std::uint64_t default_base = 0xFED40000;  // PC Client memory map (PTP, TIS 1.3)
inline constexpr std::size_t window_size = 0x1000;         // one locality's registers
inline constexpr std::uint8_t localities = 5;              // 0-4
inline constexpr std::size_t region_size = window_size * localities;  // 0x5000

// Offsets inside a locality window. Registers are little-endian (PC memory space).
namespace reg {
inline constexpr std::uint16_t access = 0x000;           // TPM_ACCESS_x, 1 byte
inline constexpr std::uint16_t int_enable = 0x008;       // TPM_INT_ENABLE_x, 4 bytes
inline constexpr std::uint16_t int_vector = 0x00C;       // TPM_INT_VECTOR_x, 1 byte (SIRQ number)
inline constexpr std::uint16_t int_status = 0x010;       // TPM_INT_STATUS_x, 4 bytes, write 1 to clear
inline constexpr std::uint16_t intf_capability = 0x014;  // TPM_INTF_CAPABILITY_x, 4 bytes, read-only
inline constexpr std::uint16_t sts = 0x018;              // TPM_STS_x: status byte, burstCount at 0x19-0x1A
inline constexpr std::uint16_t burst_count = 0x019;      // 2 bytes inside TPM_STS
inline constexpr std::uint16_t sts_ext = 0x01B;          // PTP: commandCancel, resetEstablishment, tpmFamily
inline constexpr std::uint16_t data_fifo = 0x024;        // TPM_DATA_FIFO_x, 1-4 bytes per access
inline constexpr std::uint16_t interface_id = 0x030;     // PTP TPM_INTERFACE_ID_x; all ones on TIS 1.3 chips
inline constexpr std::uint16_t xdata_fifo = 0x080;       // PTP TPM_XDATA_FIFO_x, alias of the FIFO
inline constexpr std::uint16_t did_vid = 0xF00;          // TPM_DID_VID_x: vendor in 15:0, device in 31:16
inline constexpr std::uint16_t rid = 0xF04;              // TPM_RID_x, 1 byte
}  // namespace reg

// TPM_ACCESS_x.
namespace access {
inline constexpr std::uint8_t tpm_establishment = 1U << 0;  // read: 1 = no dynamic OS launched since reset
inline constexpr std::uint8_t request_use = 1U << 1;        // write 1: ask for the locality; read: request pending
inline constexpr std::uint8_t pending_request = 1U << 2;    // read: another locality is asking
inline constexpr std::uint8_t seize = 1U << 3;              // write 1: take the TPM from a lower locality
inline constexpr std::uint8_t been_seized = 1U << 4;        // read: a higher locality seized us; write 1 clears
inline constexpr std::uint8_t active_locality = 1U << 5;    // read: ours; write 1: relinquish (or drop a request)
inline constexpr std::uint8_t reg_valid_sts = 1U << 7;      // tpmRegValidSts: the other bits are valid
// Seize is write-only and bit 6 reserved: both read 0 on a real chip, so a
// value with either set is not a register value (an absent chip reads 0xFF).
inline constexpr std::uint8_t read_zero = (1U << 6) | seize;
}  // namespace access

// TPM_STS_x (32 bits as read with one 4-byte access at reg::sts).
namespace sts {
inline constexpr std::uint32_t response_retry = 1U << 1;  // write 1: the TPM resends the response from byte 0
inline constexpr std::uint32_t self_test_done = 1U << 2;
inline constexpr std::uint32_t expect = 1U << 3;          // the TPM expects more command bytes (valid with stsValid)
inline constexpr std::uint32_t data_avail = 1U << 4;      // response bytes are available (valid with stsValid)
inline constexpr std::uint32_t tpm_go = 1U << 5;          // write 1: execute the command received
inline constexpr std::uint32_t command_ready = 1U << 6;   // read: Ready state; write 1: go Ready / abort
inline constexpr std::uint32_t sts_valid = 1U << 7;       // Expect and dataAvail are valid
inline constexpr unsigned burst_shift = 8;                // burstCount in bits 23:8
inline constexpr std::uint32_t burst_mask = 0xFFFFU << burst_shift;
inline constexpr std::uint32_t command_cancel = 1U << 24;       // PTP, write: abort with TPM_RC_CANCELED
inline constexpr std::uint32_t reset_establishment = 1U << 25;  // PTP, write from locality 3 or 4
inline constexpr unsigned family_shift = 26;                    // PTP tpmFamily, bits 27:26
inline constexpr std::uint32_t family_mask = 3U << family_shift;
inline constexpr std::uint32_t family_tpm12 = 0U << family_shift;
inline constexpr std::uint32_t family_tpm2 = 1U << family_shift;
// tpmGo and responseRetry are write-only and bit 0 is reserved: they read 0, so
// a status with any of them set is noise (Linux tpm_tis_core: TPM_STS_READ_ZERO).
inline constexpr std::uint32_t read_zero = (1U << 0) | response_retry | tpm_go;

constexpr auto burst_count(std::uint32_t v) noexcept -> std::uint16_t {
    return static_cast<std::uint16_t>((v & burst_mask) >> burst_shift);
}
constexpr auto sane(std::uint32_t v) noexcept -> bool { return (v & read_zero) == 0; }
}  // namespace sts

// TPM_INT_ENABLE_x and TPM_INT_STATUS_x share the event bits.
namespace irq {
inline constexpr std::uint32_t data_avail = 1U << 0;
inline constexpr std::uint32_t sts_valid = 1U << 1;
inline constexpr std::uint32_t locality_change = 1U << 2;
inline constexpr std::uint32_t command_ready = 1U << 7;
inline constexpr std::uint32_t events = data_avail | sts_valid | locality_change | command_ready;
inline constexpr std::uint32_t polarity_mask = 3U << 3;  // INT_ENABLE typePolarity
inline constexpr std::uint32_t global_enable = 1U << 31;  // INT_ENABLE globalIntEnable
}  // namespace irq

// TPM_INTF_CAPABILITY_x.
namespace intf {
inline constexpr std::uint32_t data_avail_int = 1U << 0;
inline constexpr std::uint32_t sts_valid_int = 1U << 1;
inline constexpr std::uint32_t locality_change_int = 1U << 2;
inline constexpr std::uint32_t level_high = 1U << 3;
inline constexpr std::uint32_t level_low = 1U << 4;
inline constexpr std::uint32_t edge_rising = 1U << 5;
inline constexpr std::uint32_t edge_falling = 1U << 6;
inline constexpr std::uint32_t command_ready_int = 1U << 7;
inline constexpr std::uint32_t burst_count_static = 1U << 8;
inline constexpr unsigned transfer_size_shift = 9;  // DataTransferSizeSupport, bits 10:9
inline constexpr std::uint32_t transfer_64 = 3U << transfer_size_shift;  // legacy, 8, 32, 64 bytes
inline constexpr unsigned version_shift = 28;  // InterfaceVersion, bits 30:28
inline constexpr std::uint32_t version_mask = 7U << version_shift;
inline constexpr std::uint32_t version_tis12 = 0U << version_shift;  // TIS 1.21 or earlier
inline constexpr std::uint32_t version_tis13 = 2U << version_shift;  // TIS 1.3
inline constexpr std::uint32_t version_ptp = 3U << version_shift;    // TIS 1.3 for TPM 2.0 (PTP)
}  // namespace intf

// PTP TPM_INTERFACE_ID_x.
namespace iface_id {
inline constexpr std::uint32_t type_mask = 0xF;  // InterfaceType
inline constexpr std::uint32_t type_fifo = 0x0;  // FIFO interface for TPM 2.0 (PTP)
inline constexpr std::uint32_t type_crb = 0x1;
inline constexpr std::uint32_t type_tis13 = 0xF;  // TIS 1.3 FIFO: this register is not implemented
inline constexpr std::uint32_t cap_locality = 1U << 8;  // five localities
inline constexpr std::uint32_t cap_fifo = 1U << 13;
inline constexpr std::uint32_t cap_crb = 1U << 14;
inline constexpr std::uint32_t sel_lock = 1U << 19;  // IntfSelLock
}  // namespace iface_id

// Register address of (locality, offset) inside the 0x5000 region.
constexpr auto address(std::uint8_t locality, std::uint16_t offset) noexcept -> std::size_t {
    return std::size_t{locality} * window_size + offset;
}

// The family TPM_INTF_CAPABILITY announces, if it does: InterfaceVersion "TIS 1.3
// for TPM 2.0" means TPM 2.0. TIS 1.3 and earlier carry either family, and
// TPM_INTERFACE_ID is a reserved register on those chips (its value means
// nothing), so the answer is then "unknown" and a probe command decides.
constexpr auto announced_family(std::uint32_t intf_capability) noexcept -> std::optional<wire::family> {
    if ((intf_capability & intf::version_mask) == intf::version_ptp) return wire::family::tpm2;
    return std::nullopt;
}

}  // namespace xtpm::proto::tis
