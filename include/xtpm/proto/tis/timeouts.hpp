// Timeouts A-D and command durations of the TIS driver, and the TPM 1.2
// capabilities through which a chip reports its own. TIS 1.3 section 5
// (TIMEOUT_A-D: 750/2000/750/750 ms), PTP for TPM 2.0 section 6.5.1.4 Table 18,
// TCG PC Client Device Driver Design Principles for TPM 2.0 section 10 (90 s per
// command, 180 s for Create/CreatePrimary/CreateLoaded), TPM 1.2 Main Part 2
// section 21.2 (TPM_CAP_PROP_TIS_TIMEOUT, TPM_CAP_PROP_DURATION, microseconds).
#pragma once

#include <xtpm/wire/header.hpp>

#include <algorithm>
#include <chrono>

namespace xtpm::proto::tis {

using std::chrono::milliseconds;

// Every wait of the driver is bounded by one of these. A bound is not a delay:
// polling stops as soon as the chip answers, so generous bounds cost nothing on
// a healthy chip and only decide how long a broken one can hold the caller.
struct timeouts {
    milliseconds a{750};    // TIMEOUT_A: locality granted after requestUse or Seize
    milliseconds b{2000};   // TIMEOUT_B: commandReady after a write of commandReady (also abort)
    milliseconds c{750};    // TIMEOUT_C: stsValid after a FIFO access (Expect, dataAvail valid)
    milliseconds d{750};    // TIMEOUT_D: a non-zero burstCount
    // dataAvail after tpmGo. PTP's TPM 2.0 C and D (200, 30 ms) are shorter than
    // TIS 1.3's; the longer values serve both families.
    milliseconds standard{90'000};       // any command (Design Principles section 10)
    milliseconds long_running{180'000};  // key generation (is_long_running)
    friend constexpr auto operator==(timeouts const&, timeouts const&) -> bool = default;
};

// Caps on what a chip may ask for. 30 s is 15x TIMEOUT_B: a register transition
// slower than that is a dead chip. 300 s is the longest command bound of Linux's
// TPM 2.0 driver and exactly what swtpm's TPM 1.2 reports as its long duration.
inline constexpr milliseconds max_timeout{30'000};
inline constexpr milliseconds max_duration{300'000};
// Some TPM 1.2 chips report milliseconds where the spec says microseconds (Linux
// tpm1_get_timeouts scales them): a non-zero value below 1000 us is read as ms.
inline constexpr std::uint32_t ms_quirk_below = 1000;

// A chip-reported value in microseconds (0: not reported) may only lengthen
// `current`, up to `cap`: a shorter bound can only fail a slow but correct chip.
constexpr auto lengthen(milliseconds current, std::uint32_t chip_us, milliseconds cap) noexcept -> milliseconds {
    if (chip_us == 0) return current;
    auto const ms = chip_us < ms_quirk_below ? milliseconds{chip_us} : milliseconds{chip_us / 1000};
    return std::max(current, std::min(ms, cap));
}

// --- command durations ------------------------------------------------------
constexpr auto is_long_running(wire::family fam, std::uint32_t code) noexcept -> bool {
    if (fam == wire::family::tpm2) {
        return code == 0x131     // TPM2_CreatePrimary
               || code == 0x153  // TPM2_Create
               || code == 0x191; // TPM2_CreateLoaded
    }
    switch (code) {  // TPM 1.2 ordinals the Main spec classes as long
    case 0x0D:       // TPM_TakeOwnership
    case 0x1F:       // TPM_CreateWrapKey
    case 0x50:       // TPM_SelfTestFull
    case 0x53:       // TPM_ContinueSelfTest
    case 0x78:       // TPM_CreateEndorsementKeyPair
    case 0x79:       // TPM_MakeIdentity
    case 0x7F:       // TPM_CreateRevocableEK
        return true;
    default: return false;
    }
}

constexpr auto duration_for(timeouts const& t, wire::family fam, std::uint32_t code) noexcept -> milliseconds {
    return is_long_running(fam, code) ? t.long_running : t.standard;
}

// --- what a TPM 1.2 chip reports ----------------------------------------------
struct chip_timeouts {  // TPM_CAP_PROP_TIS_TIMEOUT: four UINT32, microseconds
    std::uint32_t a, b, c, d;
    static constexpr auto fields =
        wire::describe(&chip_timeouts::a, &chip_timeouts::b, &chip_timeouts::c, &chip_timeouts::d);
};
struct chip_durations {  // TPM_CAP_PROP_DURATION: short, medium, long, microseconds
    std::uint32_t short_us, medium_us, long_us;
    static constexpr auto fields =
        wire::describe(&chip_durations::short_us, &chip_durations::medium_us, &chip_durations::long_us);
};

constexpr auto apply(timeouts t, chip_timeouts const& c) noexcept -> timeouts {
    t.a = lengthen(t.a, c.a, max_timeout);
    t.b = lengthen(t.b, c.b, max_timeout);
    t.c = lengthen(t.c, c.c, max_timeout);
    t.d = lengthen(t.d, c.d, max_timeout);
    return t;
}

// Any ordinal that is not long may be short or medium: medium bounds both.
constexpr auto apply(timeouts t, chip_durations const& c) noexcept -> timeouts {
    t.standard = lengthen(t.standard, c.medium_us, max_duration);
    t.long_running = lengthen(t.long_running, c.long_us, max_duration);
    return t;
}

// TPM_GetCapability(TPM_CAP_PROPERTY, subCap) (TPM 1.2 Main Part 3 section 7.1).
struct tpm12_get_capability_command {
    wire::command_header header;
    std::uint32_t cap_area;
    wire::sized<std::uint32_t, 4> sub_cap;
    static constexpr auto fields = wire::describe(&tpm12_get_capability_command::header,
                                                  &tpm12_get_capability_command::cap_area,
                                                  &tpm12_get_capability_command::sub_cap);
};
struct tpm12_get_capability_response {
    wire::response_header header;
    wire::sized<std::uint32_t, 64> resp;  // the properties here are 12 or 16 bytes
    static constexpr auto fields =
        wire::describe(&tpm12_get_capability_response::header, &tpm12_get_capability_response::resp);
};

inline constexpr std::uint32_t tpm12_ord_get_capability = 0x65;
inline constexpr std::uint32_t tpm12_cap_property = 5;
inline constexpr std::uint32_t tpm12_prop_tis_timeout = 0x115;
inline constexpr std::uint32_t tpm12_prop_duration = 0x120;
inline constexpr std::size_t tpm12_get_capability_size = 22;

inline auto tpm12_capability_command(std::uint32_t property, wire::bytes_span out) -> result<wire::bytes_view> {
    std::array<std::byte, 4> sub{};
    wire::store_be(sub, property);
    return wire::encode_into(out, tpm12_get_capability_command{
                                      {wire::tpm_st::rqu_command, tpm12_get_capability_size,
                                       wire::tpm_cc{tpm12_ord_get_capability}},
                                      tpm12_cap_property,
                                      {sub}});
}

// The property out of a successful, well-formed response. A TPM error comes
// back as errc::device_failure: the caller then keeps its defaults.
template <class Property>
auto parse_tpm12_property(wire::bytes_view resp) -> result<Property> {
    auto const hdr = wire::parse_response(resp);
    if (!hdr) return std::unexpected{hdr.error()};
    if (hdr->tag != wire::tpm_st::rsp_command || hdr->rc != wire::tpm_rc::success) return fail(errc::device_failure);
    auto const r = wire::decode_all<tpm12_get_capability_response>(resp);
    if (!r) return std::unexpected{r.error()};
    return wire::decode_all<Property>(r->resp.data);
}

// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_FAMILY_INDICATOR, 1): the
// family probe. A TPM 2.0 answers with a TPM 2.0 tag; a TPM 1.2 answers any
// 0x8001-tagged command with a TPM 1.2 error (TPM_BADTAG or TPM_BAD_ORDINAL).
struct tpm2_get_capability_command {
    wire::command_header header;
    std::uint32_t capability;
    std::uint32_t property;
    std::uint32_t count;
    static constexpr auto fields =
        wire::describe(&tpm2_get_capability_command::header, &tpm2_get_capability_command::capability,
                       &tpm2_get_capability_command::property, &tpm2_get_capability_command::count);
};
inline constexpr std::size_t tpm2_get_capability_size = 22;

inline auto tpm2_probe_command(wire::bytes_span out) -> result<wire::bytes_view> {
    return wire::encode_into(out, tpm2_get_capability_command{
                                      {wire::tpm_st::no_sessions, tpm2_get_capability_size,
                                       wire::tpm_cc::get_capability},
                                      6,       // TPM_CAP_TPM_PROPERTIES
                                      0x100,   // TPM_PT_FAMILY_INDICATOR
                                      1});
}

}  // namespace xtpm::proto::tis
