// Fixed-capacity big-endian writer over a caller's buffer. The error is sticky:
// after one write does not fit (or a value cannot be encoded), nothing more is
// written and ok() is false, so a whole message can be written and checked once
// (after BoringSSL's CBB). finish() reports the first error.
#pragma once

#include <xtpm/wire/reader.hpp>

#include <algorithm>
#include <limits>

namespace xtpm::wire {

class writer {
public:
    constexpr explicit writer(bytes_span out) noexcept : out_{out} {}

    template <wire_scalar T>
    constexpr auto write_be(T value) noexcept -> writer& {
        if (!reserve(sizeof(T))) return *this;
        store_be(out_.subspan(off_, sizeof(T)), value);
        off_ += sizeof(T);
        return *this;
    }

    constexpr auto bytes(bytes_view b) noexcept -> writer& {
        if (!reserve(b.size())) return *this;
        std::ranges::copy(b, out_.begin() + static_cast<std::ptrdiff_t>(off_));
        off_ += b.size();
        return *this;
    }

    // A length prefix of type L written now and backfilled when the scope ends
    // with the number of bytes written inside it plus `bias` (TPM2B sizes; a header
    // size field, which counts the tag and itself, uses bias 6). A count that does
    // not fit L makes the writer fail with errc::too_large.
    template <wire_scalar L>
    class size_prefix {
        static_assert(std::unsigned_integral<L>, "a length prefix is an integer");

    public:
        constexpr explicit size_prefix(writer& w, std::size_t bias = 0) noexcept
            : w_{w}, at_{w.off_}, bias_{bias} {
            w_.write_be(L{});
        }
        size_prefix(size_prefix const&) = delete;
        auto operator=(size_prefix const&) -> size_prefix& = delete;
        constexpr ~size_prefix() {
            if (!w_.ok()) return;
            auto const n = w_.off_ - at_ - sizeof(L) + bias_;
            if (n > std::numeric_limits<L>::max()) {
                w_.invalidate(errc::too_large);  // the region outgrew its prefix type
                return;
            }
            store_be(w_.out_.subspan(at_, sizeof(L)), static_cast<L>(n));
        }

    private:
        writer& w_;
        std::size_t at_;
        std::size_t bias_;
    };

    // Overwrite an already written big-endian scalar at `at` (e.g. a header size field).
    // A range outside the written bytes is a caller bug: errc::bad_value, nothing written.
    template <wire_scalar T>
    constexpr auto patch_be(std::size_t at, T value) noexcept -> void {
        if (at > off_ || off_ - at < sizeof(T)) return invalidate(errc::bad_value);  // no wrap on `at + n`
        store_be(out_.subspan(at, sizeof(T)), value);
    }

    // Mark the message invalid (a value that cannot be encoded); sticky like overflow.
    // The first error wins, so finish() names the cause, not a consequence.
    constexpr auto invalidate(errc why = errc::bad_value) noexcept -> void {
        if (!failed_) error_ = why;
        failed_ = true;
    }

    [[nodiscard]] constexpr auto ok() const noexcept -> bool { return !failed_; }
    [[nodiscard]] constexpr auto size() const noexcept -> std::size_t { return off_; }
    [[nodiscard]] constexpr auto written() const noexcept -> bytes_view { return out_.first(off_); }
    // The written bytes, or the first error: errc::buffer_full if a write did not
    // fit, else the cause given to invalidate() (too_large, bad_value).
    [[nodiscard]] auto finish() const noexcept -> result<bytes_view> {
        if (failed_) return fail(error_);
        return written();
    }

    template <wire_scalar T>
    static constexpr auto store_be(bytes_span b, T value) noexcept -> void {
        auto v = to_unsigned(value);
        for (std::size_t i = sizeof(v); i-- > 0;) {
            b[i] = static_cast<std::byte>(v & 0xFF);
            v = static_cast<decltype(v)>(v >> 8);
        }
    }

private:
    template <class T>
    static constexpr auto to_unsigned(T v) noexcept {
        if constexpr (std::is_enum_v<T>) return static_cast<std::underlying_type_t<T>>(v);
        else return v;
    }

    constexpr auto reserve(std::size_t n) noexcept -> bool {
        if (failed_) return false;
        if (out_.size() - off_ < n) { invalidate(errc::buffer_full); return false; }
        return true;
    }

    bytes_span out_;
    std::size_t off_ = 0;
    bool failed_ = false;
    errc error_ = errc::buffer_full;
};

template <wire_scalar T>
constexpr auto store_be(bytes_span b, T value) noexcept -> void {
    writer::store_be(b, value);
}

}  // namespace xtpm::wire
