// Declared wire codecs: a message lists its fields once (`fields = describe(...)`)
// and one generic encode/decode walks them (after go-tpm's declared structures).
// Decoded views alias the input; decode is all-or-nothing like reader's reads.
#pragma once

#include <xtpm/wire/writer.hpp>

#include <array>
#include <tuple>

namespace xtpm::wire {

// The field list of a message: member pointers, in wire order.
template <class... M>
constexpr auto describe(M... members) noexcept {
    return std::tuple{members...};
}

template <class T>
concept described = requires { T::fields; };

// Bytes preceded by a length of type L, at most Max of them (TPM2B_*, TPM 1.2 sized buffers).
template <wire_scalar L, std::size_t Max>
struct sized {
    static_assert(Max <= std::numeric_limits<L>::max());
    using length_type = L;
    static constexpr std::size_t max = Max;
    bytes_view data;
    friend constexpr auto operator==(sized a, sized b) noexcept -> bool {
        return std::ranges::equal(a.data, b.data);
    }
};

// Exactly N bytes (digests of a known size, fixed nonces), copied.
template <std::size_t N>
using fixed_bytes = std::array<std::byte, N>;

// Every byte to the end of the message (a command body that a layer below parses).
struct rest_bytes {
    bytes_view data;
    friend constexpr auto operator==(rest_bytes a, rest_bytes b) noexcept -> bool {
        return std::ranges::equal(a.data, b.data);
    }
};

// A count of type L followed by that many Ts, at most Max (TPML_* lists). Fixed
// storage, because wire/ never allocates.
template <wire_scalar L, class T, std::size_t Max>
struct counted {
    using length_type = L;
    static constexpr std::size_t max = Max;
    std::array<T, Max> items{};
    L count{};
    [[nodiscard]] constexpr auto view() const noexcept -> std::span<T const> {
        XTPM_ASSERT(count <= Max);  // decode never yields more; a larger count is a caller bug
        return {items.data(), count};
    }
    friend constexpr auto operator==(counted const& a, counted const& b) noexcept -> bool {
        return std::ranges::equal(a.view(), b.view());
    }
};

// The one extension point: selector unions (TPMU_*), each with its own round-trip test.
template <class T>
struct codec;

template <class T> struct is_sized : std::false_type {};
template <class L, std::size_t M> struct is_sized<sized<L, M>> : std::true_type {};
template <class T> struct is_counted : std::false_type {};
template <class L, class T, std::size_t M> struct is_counted<counted<L, T, M>> : std::true_type {};
template <class T> struct is_fixed : std::false_type {};
template <std::size_t N> struct is_fixed<std::array<std::byte, N>> : std::true_type {};

template <class T>
constexpr auto encode(writer& w, T const& v) noexcept -> void {
    if constexpr (wire_scalar<T>) {
        w.write_be(v);
    } else if constexpr (is_fixed<T>::value) {
        w.bytes(v);
    } else if constexpr (std::same_as<T, rest_bytes>) {
        w.bytes(v.data);
    } else if constexpr (is_sized<T>::value) {
        if (v.data.size() > T::max) return w.invalidate(errc::too_large);  // a bug in the caller
        w.write_be(static_cast<typename T::length_type>(v.data.size()));
        w.bytes(v.data);
    } else if constexpr (is_counted<T>::value) {
        if (v.count > T::max) return w.invalidate(errc::too_large);
        w.write_be(v.count);
        for (auto const& item : v.view()) encode(w, item);
    } else if constexpr (described<T>) {
        std::apply([&](auto... m) { (encode(w, v.*m), ...); }, T::fields);
    } else {
        codec<T>::encode(w, v);
    }
}

template <class T>
auto decode(reader& r) noexcept -> result<T> {
    if constexpr (wire_scalar<T>) {
        return r.read_be<T>();
    } else if constexpr (is_fixed<T>::value) {
        auto b = r.bytes(std::tuple_size_v<T>);
        if (!b) return std::unexpected{b.error()};
        T out;
        std::ranges::copy(*b, out.begin());
        return out;
    } else if constexpr (std::same_as<T, rest_bytes>) {
        return T{r.rest()};
    } else if constexpr (is_sized<T>::value) {
        reader t = r;
        auto n = t.read_be<typename T::length_type>();
        if (!n) return std::unexpected{n.error()};
        if (*n > T::max) return fail(errc::too_large);
        auto b = t.bytes(*n);
        if (!b) return std::unexpected{b.error()};
        r = t;
        return T{*b};
    } else if constexpr (is_counted<T>::value) {
        reader t = r;
        T out;
        auto n = t.read_be<typename T::length_type>();
        if (!n) return std::unexpected{n.error()};
        if (*n > T::max) return fail(errc::too_large);
        for (std::size_t i = 0; i < *n; ++i) {
            auto item = decode<typename decltype(out.items)::value_type>(t);
            if (!item) return std::unexpected{item.error()};
            out.items[i] = *item;
        }
        out.count = *n;
        r = t;
        return out;
    } else if constexpr (described<T>) {
        reader t = r;
        T out{};
        std::error_code ec;
        std::apply([&](auto... m) {
            ((ec ? void() : [&] {
                 auto f = decode<std::remove_cvref_t<decltype(out.*m)>>(t);
                 if (f) out.*m = *f;
                 else ec = f.error();
             }()), ...);
        }, T::fields);
        if (ec) return std::unexpected{ec};
        r = t;
        return out;
    } else {
        return codec<T>::decode(r);
    }
}

// Whole-buffer forms: decode requires every byte to be consumed.
template <class T>
auto decode_all(bytes_view in) noexcept -> result<T> {
    reader r{in};
    auto v = decode<T>(r);
    if (!v) return v;
    if (auto ec = r.expect_end()) return std::unexpected{ec};
    return v;
}

template <class T>
auto encode_into(bytes_span out, T const& v) noexcept -> result<bytes_view> {
    writer w{out};
    encode(w, v);
    return w.finish();
}

}  // namespace xtpm::wire
