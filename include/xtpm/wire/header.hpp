// TPM command and response headers, shared by both families: tag (u16), size
// (u32, the whole message), code (u32: command code or return code).
// TPM 2.0 Part 1 section 18 / Part 2 section 10.6; TPM 1.2 Main Part 2 section 6.
#pragma once

#include <xtpm/wire/codec.hpp>
#include <xtpm/wire/types.hpp>

namespace xtpm::wire {

inline constexpr std::size_t header_size = 10;

struct command_header {
    tpm_st tag;
    std::uint32_t size;
    tpm_cc code;
    static constexpr auto fields =
        describe(&command_header::tag, &command_header::size, &command_header::code);
    friend constexpr auto operator==(command_header const&, command_header const&) -> bool = default;
};

struct response_header {
    tpm_st tag;
    std::uint32_t size;
    tpm_rc rc;
    static constexpr auto fields =
        describe(&response_header::tag, &response_header::size, &response_header::rc);
    friend constexpr auto operator==(response_header const&, response_header const&) -> bool = default;
};

// A command that passed validation; `bytes` is the whole command, aliasing the
// receive buffer.
struct command_view {
    command_header header;
    bytes_view bytes;
    family fam;
    std::uint8_t locality = 0;
};

struct response_view {
    bytes_view bytes;
    [[nodiscard]] auto rc() const noexcept -> tpm_rc {
        return bytes.size() >= header_size ? load_be<tpm_rc>(bytes.subspan(6, 4)) : rc2::failure;
    }
};

// Framing a byte stream: how long the command that starts `prefix` is. Returns 0
// while fewer than 10 bytes are known; rejects a size field below the header
// (errc::too_small) or above `max` (errc::too_large) before any body is read.
inline auto frame_size(bytes_view prefix, std::size_t max) noexcept -> result<std::size_t> {
    if (prefix.size() < header_size) return std::size_t{0};
    auto const size = load_be<std::uint32_t>(prefix.subspan(2, 4));
    if (size < header_size) return fail(errc::too_small);
    if (size > max) return fail(errc::too_large);
    return std::size_t{size};
}

// The pipeline's admission check (architecture.md, "one generic pipeline"): a
// header is present, its tag is a command tag of the device's family, the size
// field equals the bytes received, and the command fits the advertised buffer.
inline auto parse_command(bytes_view in, family fam, std::size_t max, std::uint8_t locality = 0) noexcept
    -> result<command_view> {
    reader r{in};
    auto hdr = decode<command_header>(r);
    if (!hdr) return std::unexpected{hdr.error()};
    if (command_family(hdr->tag) != fam) return fail(errc::bad_tag);
    if (hdr->size < header_size) return fail(errc::too_small);
    if (hdr->size != in.size()) return fail(errc::size_mismatch);
    if (hdr->size > max) return fail(errc::too_large);
    if (locality > max_locality) return fail(errc::bad_locality);
    return command_view{*hdr, in, fam, locality};
}

// A response coming back from a device or over a transport: whole header, a
// response tag, size field equal to the bytes.
inline auto parse_response(bytes_view in) noexcept -> result<response_header> {
    auto hdr = decode_all<response_header>(in.first(std::min(in.size(), header_size)));
    if (!hdr) return hdr;
    if (!response_family(hdr->tag)) return fail(errc::bad_tag);
    if (hdr->size != in.size()) return fail(errc::size_mismatch);
    return hdr;
}

}  // namespace xtpm::wire
