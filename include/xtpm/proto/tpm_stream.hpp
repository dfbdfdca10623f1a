// Framing a byte stream of raw TPM commands (swtpm's data channel, chardevs),
// sans-I/O: by the header's size field (TPM 2.0 Part 1 section 18), and, for
// TPM 2.0, swtpm's optional mssim prefix {u32 8, u8 locality, u32 length}
// (peers-and-protocols.md 4.2), whose length and locality swtpm never checks.
// Also the in-band SetLocality vendor command of swtpm --locality allow-set-locality.
#pragma once

#include <xtpm/proto/mssim.hpp>
#include <xtpm/wire/error_response.hpp>

namespace xtpm::proto {

enum class stream_framing : std::uint8_t { raw, mssim };

// The frame at the start of a stream buffer. While incomplete, `size` is 0
// (the header or prefix is not in yet) or the total the frame needs.
struct stream_frame {
    stream_framing framing = stream_framing::raw;
    std::uint8_t locality = 0;  // from the mssim prefix; raw frames leave 0
    std::size_t size = 0;       // prefix + command bytes, once known
    wire::bytes_view command;   // the TPM command, once complete
    [[nodiscard]] auto complete() const noexcept -> bool { return !command.empty(); }
};

// Bytes a stream buffer needs for a frame: the largest command plus the prefix.
inline auto stream_buffer_size(std::size_t max_command) noexcept -> std::size_t {
    return max_command + mssim::send_command_prefix_size;
}

// How the stream at `in` is framed: mssim once the first u32 reads 8 on a TPM
// 2.0 stream (no TPM 2.0 tag starts with 00 00), raw otherwise.
inline auto framing_of(wire::bytes_view in, wire::family fam) noexcept -> stream_framing {
    if (fam == wire::family::tpm2 && in.size() >= 4 &&
        wire::load_be<std::uint32_t>(in) == static_cast<std::uint32_t>(mssim::cmd::send_command))
        return stream_framing::mssim;
    return stream_framing::raw;
}

// The next frame, or the error that makes the stream unusable: a size field
// below the header (errc::too_small), above `max_command` (errc::too_large), or
// a prefix locality above 4 (errc::bad_locality). The answer to an error is
// error_reply(); the connection must then close, as no later byte can be trusted.
// A command whose inner size field disagrees with the prefix length is framed by
// the prefix and left to the pipeline, which answers TPM_RC_COMMAND_SIZE.
inline auto next_frame(wire::bytes_view in, wire::family fam, std::size_t max_command) noexcept
    -> result<stream_frame> {
    stream_frame f;
    if (fam == wire::family::tpm2 && in.size() < 4 && (in.empty() || in[0] == std::byte{0}))
        return f;  // may still become an mssim prefix
    f.framing = framing_of(in, fam);
    if (f.framing == stream_framing::raw) {
        auto size = wire::frame_size(in, max_command);
        if (!size) return std::unexpected{size.error()};
        f.size = *size;
        if (f.size != 0 && in.size() >= f.size) f.command = in.first(f.size);
        return f;
    }
    constexpr auto prefix = mssim::send_command_prefix_size;
    if (in.size() < prefix) return f;
    f.locality = std::to_integer<std::uint8_t>(in[4]);
    auto const len = wire::load_be<std::uint32_t>(in.subspan(5, 4));
    if (f.locality > wire::max_locality) return fail(errc::bad_locality);
    if (len < wire::header_size) return fail(errc::too_small);
    if (len > max_command) return fail(errc::too_large);
    f.size = prefix + len;
    if (in.size() >= f.size) f.command = in.subspan(prefix, len);
    return f;
}

// Room a reply buffer needs around the response for either framing.
inline constexpr std::size_t reply_headroom = mssim::reply_headroom;
inline constexpr std::size_t reply_tailroom = mssim::reply_tailroom;

// The reply for a frame whose response sits at buf[reply_headroom, +size).
inline auto frame_reply(stream_framing framing, wire::bytes_span buf, std::size_t size) noexcept
    -> wire::bytes_view {
    if (framing == stream_framing::mssim) return mssim::wrap_response(buf, size);
    return buf.subspan(reply_headroom, size);
}

// A TPM error response carrying `ec`, framed as the stream at `in` was.
inline auto error_reply(wire::bytes_view in, wire::family fam, std::error_code ec, wire::bytes_span buf) noexcept
    -> wire::bytes_view {
    auto resp = wire::error_response(ec, fam, buf.subspan(reply_headroom));
    return frame_reply(framing_of(in, fam), buf, resp.size());
}

// swtpm's in-band SetLocality (TPM2_CC_SET_LOCALITY / TPM_ORD_SET_LOCALITY, a
// vendor code the Linux vtpm proxy sends): header, then u8 locality.
inline constexpr std::uint32_t set_locality_vendor_code = 0x20001000;

inline auto is_set_locality(wire::bytes_view cmd) noexcept -> bool {
    return cmd.size() >= wire::header_size && wire::load_be<std::uint32_t>(cmd.subspan(6, 4)) == set_locality_vendor_code;
}

// The requested locality; errc::truncated without the byte, errc::bad_locality above 4.
inline auto decode_set_locality(wire::bytes_view cmd) noexcept -> result<std::uint8_t> {
    if (cmd.size() < wire::header_size + 1) return fail(errc::truncated);
    auto const loc = std::to_integer<std::uint8_t>(cmd[wire::header_size]);
    if (loc > wire::max_locality) return fail(errc::bad_locality);
    return loc;
}

}  // namespace xtpm::proto
