// How long a frontend waits for FINISH after SUBMIT before it cancels, per command
// (xen-vtpm-protocol.md 3.7): Linux's classes, from its TPM 1.2 ordinal table (TCG TPM
// Main Part 2 section 17) and its TPM 2.0 table (drivers/char/tpm/tpm2-cmd.c), folded
// into three classes. The machine has no clock; the I/O layer turns this into a deadline.
#pragma once

#include <xtpm/wire/header.hpp>

#include <algorithm>
#include <array>
#include <chrono>

namespace xtpm::proto::tpmif {

enum class duration_class : std::uint8_t { fast, medium, slow, unknown };

struct durations {
    std::chrono::milliseconds fast, medium, slow, unknown;
};

// TPM 1.2: what vtpm-stubdom reports in TPM_CAP_PROP_TIS_DURATION since Xen 4.16
// (3 s / 3 s / 600 s) and Linux's 2-minute fallback for ordinals it does not know.
inline constexpr durations tpm12_durations{std::chrono::seconds{3}, std::chrono::seconds{3},
                                           std::chrono::seconds{600}, std::chrono::seconds{120}};
// TPM 2.0: Linux's MEDIUM and LONG (0.75 s, 2 s) raised to the 3 s a vTPM needs because
// it persists its state before answering (the Xen 4.16 -ETIME fix, doc 3.7);
// LONG_LONG 300 s and TPM2_DURATION_DEFAULT 120 s as in Linux.
inline constexpr durations tpm2_durations{std::chrono::seconds{3}, std::chrono::seconds{3},
                                          std::chrono::seconds{300}, std::chrono::seconds{120}};

namespace detail {

struct code_class {
    std::uint32_t code;
    duration_class cls;
};

// TPM 1.2 ordinals that clients commonly send, classed as in Linux's table
// (SHORT -> fast, MEDIUM -> medium, LONG -> slow). Sorted by ordinal.
inline constexpr std::array tpm12_classes{
    code_class{0x0A, duration_class::fast},    // OIAP
    code_class{0x0B, duration_class::fast},    // OSAP
    code_class{0x0C, duration_class::medium},  // ChangeAuth
    code_class{0x0D, duration_class::slow},    // TakeOwnership
    code_class{0x10, duration_class::fast},    // ChangeAuthOwner
    code_class{0x14, duration_class::fast},    // Extend
    code_class{0x15, duration_class::fast},    // PcrRead
    code_class{0x16, duration_class::medium},  // Quote
    code_class{0x17, duration_class::medium},  // Seal
    code_class{0x18, duration_class::medium},  // Unseal
    code_class{0x1E, duration_class::medium},  // UnBind
    code_class{0x1F, duration_class::slow},    // CreateWrapKey
    code_class{0x20, duration_class::medium},  // LoadKey
    code_class{0x21, duration_class::fast},    // GetPubKey
    code_class{0x22, duration_class::fast},    // EvictKey
    code_class{0x3C, duration_class::medium},  // Sign
    code_class{0x3E, duration_class::medium},  // Quote2
    code_class{0x41, duration_class::medium},  // LoadKey2
    code_class{0x46, duration_class::fast},    // GetRandom
    code_class{0x47, duration_class::fast},    // StirRandom
    code_class{0x50, duration_class::slow},    // SelfTestFull
    code_class{0x53, duration_class::slow},    // ContinueSelfTest
    code_class{0x54, duration_class::fast},    // GetTestResult
    code_class{0x5B, duration_class::fast},    // OwnerClear
    code_class{0x5D, duration_class::fast},    // ForceClear
    code_class{0x65, duration_class::fast},    // GetCapability
    code_class{0x78, duration_class::slow},    // CreateEndorsementKeyPair
    code_class{0x79, duration_class::slow},    // MakeIdentity
    code_class{0x7A, duration_class::medium},  // ActivateIdentity
    code_class{0x7C, duration_class::fast},    // ReadPubek
    code_class{0x98, duration_class::medium},  // SaveState
    code_class{0x99, duration_class::fast},    // Startup
    code_class{0xBA, duration_class::fast},    // FlushSpecific
    code_class{0xC8, duration_class::fast},    // PCR_Reset
    code_class{0xCC, duration_class::fast},    // NV_DefineSpace
    code_class{0xCD, duration_class::fast},    // NV_WriteValue
    code_class{0xCF, duration_class::fast},    // NV_ReadValue
};

// TPM 2.0 command codes (Part 2 section 6.5.2). Linux's MEDIUM -> fast, LONG -> medium,
// LONG_LONG -> slow; codes Linux leaves to its default get a class by what they do:
// key generation slow, private-key operations and NV writes medium, the rest fast.
inline constexpr std::array tpm2_classes{
    code_class{0x120, duration_class::medium},  // EvictControl
    code_class{0x121, duration_class::medium},  // HierarchyControl
    code_class{0x122, duration_class::medium},  // NV_UndefineSpace
    code_class{0x124, duration_class::slow},    // ChangeEPS
    code_class{0x125, duration_class::slow},    // ChangePPS
    code_class{0x126, duration_class::medium},  // Clear
    code_class{0x129, duration_class::medium},  // HierarchyChangeAuth
    code_class{0x12A, duration_class::medium},  // NV_DefineSpace
    code_class{0x131, duration_class::slow},    // CreatePrimary
    code_class{0x137, duration_class::medium},  // NV_Write
    code_class{0x13C, duration_class::fast},    // PCR_Event
    code_class{0x13E, duration_class::fast},    // SequenceComplete
    code_class{0x143, duration_class::medium},  // SelfTest
    code_class{0x144, duration_class::fast},    // Startup
    code_class{0x145, duration_class::fast},    // Shutdown
    code_class{0x146, duration_class::fast},    // StirRandom
    code_class{0x147, duration_class::medium},  // ActivateCredential
    code_class{0x148, duration_class::medium},  // Certify
    code_class{0x14E, duration_class::medium},  // NV_Read
    code_class{0x153, duration_class::slow},    // Create
    code_class{0x155, duration_class::fast},    // HMAC
    code_class{0x157, duration_class::medium},  // Load
    code_class{0x158, duration_class::medium},  // Quote
    code_class{0x159, duration_class::medium},  // RSA_Decrypt
    code_class{0x15C, duration_class::fast},    // SequenceUpdate
    code_class{0x15D, duration_class::medium},  // Sign
    code_class{0x15E, duration_class::medium},  // Unseal
    code_class{0x161, duration_class::fast},    // ContextLoad
    code_class{0x162, duration_class::fast},    // ContextSave
    code_class{0x165, duration_class::fast},    // FlushContext
    code_class{0x169, duration_class::fast},    // NV_ReadPublic
    code_class{0x173, duration_class::fast},    // ReadPublic
    code_class{0x176, duration_class::medium},  // StartAuthSession
    code_class{0x177, duration_class::slow},    // VerifySignature
    code_class{0x17A, duration_class::fast},    // GetCapability
    code_class{0x17B, duration_class::medium},  // GetRandom
    code_class{0x17D, duration_class::fast},    // Hash
    code_class{0x17E, duration_class::fast},    // PCR_Read
    code_class{0x182, duration_class::fast},    // PCR_Extend
    code_class{0x185, duration_class::fast},    // EventSequenceComplete
    code_class{0x186, duration_class::fast},    // HashSequenceStart
    code_class{0x191, duration_class::slow},    // CreateLoaded
};

template <std::size_t N>
constexpr auto lookup(std::array<code_class, N> const& table, std::uint32_t code) noexcept -> duration_class {
    auto const it = std::ranges::lower_bound(table, code, {}, &code_class::code);
    return it != table.end() && it->code == code ? it->cls : duration_class::unknown;
}

}  // namespace detail

constexpr auto classify(wire::family fam, std::uint32_t code) noexcept -> duration_class {
    return fam == wire::family::tpm2 ? detail::lookup(detail::tpm2_classes, code)
                                     : detail::lookup(detail::tpm12_classes, code);
}

constexpr auto default_durations(wire::family fam) noexcept -> durations const& {
    return fam == wire::family::tpm2 ? tpm2_durations : tpm12_durations;
}

// The wait after SUBMIT for command `code`; `table` may come from the vTPM itself
// (TPM_CAP_PROP_TIS_DURATION), as Linux reads it at probe time.
constexpr auto command_duration(wire::family fam, std::uint32_t code, durations const& table) noexcept
    -> std::chrono::milliseconds {
    switch (classify(fam, code)) {
    case duration_class::fast: return table.fast;
    case duration_class::medium: return table.medium;
    case duration_class::slow: return table.slow;
    case duration_class::unknown: break;
    }
    return table.unknown;
}

constexpr auto command_duration(wire::family fam, std::uint32_t code) noexcept -> std::chrono::milliseconds {
    return command_duration(fam, code, default_durations(fam));
}

// From the command bytes: the code is big-endian at bytes 6..9; a command too short to
// have one gets the unknown bound (the backend answers it quickly anyway).
constexpr auto command_duration(wire::family fam, wire::bytes_view cmd) noexcept -> std::chrono::milliseconds {
    if (cmd.size() < wire::header_size) return default_durations(fam).unknown;
    return command_duration(fam, wire::load_be<std::uint32_t>(cmd.subspan(6, 4)));
}

}  // namespace xtpm::proto::tpmif
