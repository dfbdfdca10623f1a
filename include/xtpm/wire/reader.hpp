// Bounds-checked big-endian cursor over untrusted bytes (after Chromium's
// SpanReader and BoringSSL's CBS). Reads are all-or-nothing: on failure the
// cursor does not move, so offset() tells where the input went wrong.
#pragma once

#include <xtpm/config.hpp>
#include <xtpm/error.hpp>

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace xtpm::wire {

using bytes_view = std::span<std::byte const>;
using bytes_span = std::span<std::byte>;

// Unsigned integers and enums over them: the only scalar types on the wire.
template <class T>
concept wire_scalar = (std::unsigned_integral<T> && !std::same_as<T, bool>) ||
                      (std::is_enum_v<T> && std::unsigned_integral<std::underlying_type_t<T>>);

class reader {
public:
    constexpr explicit reader(bytes_view in) noexcept : in_{in} {}

    // Big-endian scalar; errc::truncated (nothing consumed) if too few bytes remain.
    template <wire_scalar T>
    auto read_be() noexcept -> result<T> {
        if (remaining() < sizeof(T)) return fail(errc::truncated);
        auto v = load_be<T>(in_.subspan(off_, sizeof(T)));
        off_ += sizeof(T);
        return v;
    }

    // A view of the next n bytes, aliasing the input.
    auto bytes(std::size_t n) noexcept -> result<bytes_view> {
        if (remaining() < n) return fail(errc::truncated);
        auto v = in_.subspan(off_, n);
        off_ += n;
        return v;
    }

    // A child reader over the next n bytes (a sized region); the parent skips them.
    auto sub(std::size_t n) noexcept -> result<reader> {
        auto b = bytes(n);
        if (!b) return std::unexpected{b.error()};
        return reader{*b};
    }

    // Everything not yet read.
    constexpr auto rest() noexcept -> bytes_view {
        auto v = in_.subspan(off_);
        off_ = in_.size();
        return v;
    }

    // Trailing bytes are an error, never ignored.
    [[nodiscard]] auto expect_end() const noexcept -> std::error_code {
        return remaining() == 0 ? std::error_code{} : make_error_code(errc::trailing_bytes);
    }

    [[nodiscard]] constexpr auto remaining() const noexcept -> std::size_t { return in_.size() - off_; }
    [[nodiscard]] constexpr auto offset() const noexcept -> std::size_t { return off_; }

    // Load a big-endian scalar from exactly sizeof(T) bytes (caller checked the size).
    template <wire_scalar T>
    static constexpr auto load_be(bytes_view b) noexcept -> T {
        using U = decltype(underlying(T{}));
        U v = 0;
        for (std::size_t i = 0; i < sizeof(U); ++i) v = static_cast<U>((v << 8) | std::to_integer<U>(b[i]));
        return static_cast<T>(v);
    }

private:
    template <class T>
    static constexpr auto underlying(T) noexcept {
        if constexpr (std::is_enum_v<T>) return std::underlying_type_t<T>{};
        else return T{};
    }

    bytes_view in_;
    std::size_t off_ = 0;
};

// Big-endian load from the start of `b` when the caller has already checked the size,
// e.g. peeking at a header field in a framing buffer.
template <wire_scalar T>
constexpr auto load_be(bytes_view b) noexcept -> T {
    return reader::load_be<T>(b);
}

}  // namespace xtpm::wire
