// Messages that open with a big-endian u32 code and carry a declared body: the
// framing shared by swtpm's control channel and the mssim ports (peers 4.1, 4.3).
// A protocol lists its requests as alternatives of a std::variant; each type has
// `static constexpr code` and `fields`, and at most its last field is a sized<>.
#pragma once

#include <xtpm/wire/codec.hpp>

#include <array>
#include <type_traits>
#include <utility>
#include <variant>

namespace xtpm::proto::detail {

inline constexpr std::size_t code_size = sizeof(std::uint32_t);

template <class T>
constexpr auto code_of() noexcept -> std::uint32_t {
    return static_cast<std::uint32_t>(T::code);
}

// Encoded size of T's body with every sized<> field empty: the fixed part.
template <class T>
consteval auto fixed_body_size() -> std::size_t {
    std::array<std::byte, 256> buf{};
    wire::writer w{buf};
    wire::encode(w, T{});
    return w.size();
}

// The type of T's last field, or void for an empty body.
template <class T>
constexpr auto last_field_type() {
    constexpr auto n = std::tuple_size_v<std::remove_cvref_t<decltype(T::fields)>>;
    if constexpr (n == 0) {
        return std::type_identity<void>{};
    } else {
        using M = std::remove_cvref_t<decltype(std::get<n - 1>(T::fields))>;
        return std::type_identity<std::remove_cvref_t<decltype(std::declval<T&>().*std::declval<M>())>>{};
    }
}
template <class T>
using last_field_t = typename decltype(last_field_type<T>())::type;

// Calls f(std::type_identity<T>{}) for the alternative of V whose code is `code`;
// false if no alternative has it.
template <class V, class F>
constexpr auto visit_code(std::uint32_t code, F&& f) -> bool {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return ((code == code_of<std::variant_alternative_t<I, V>>()
                     ? (f(std::type_identity<std::variant_alternative_t<I, V>>{}), true)
                     : false) ||
                ...);
    }(std::make_index_sequence<std::variant_size_v<V>>{});
}

// How many bytes the message at the start of `in` needs: the code's 4 until it
// is in; then the fixed part; once a trailing length is readable, the whole
// message. Call again after more bytes arrive; in.size() >= the answer means
// the whole message is there. errc::unknown_command for a code
// V does not list, errc::too_large for a length above the field's named limit.
template <class V>
auto bytes_needed(wire::bytes_view in) -> result<std::size_t> {
    if (in.size() < code_size) return code_size;
    std::size_t need = 0;
    std::error_code ec;
    bool const known = visit_code<V>(wire::load_be<std::uint32_t>(in), [&]<class T>(std::type_identity<T>) {
        need = code_size + fixed_body_size<T>();
        using last = last_field_t<T>;
        if constexpr (wire::is_sized<last>::value) {
            using L = typename last::length_type;
            if (in.size() < need) return;
            auto const len = wire::load_be<L>(in.subspan(need - sizeof(L), sizeof(L)));
            if (len > last::max) { ec = make_error_code(errc::too_large); return; }
            need += len;
        }
    });
    if (!known) return fail(errc::unknown_command);
    if (ec) return std::unexpected{ec};
    return need;
}

// Decode one whole message (exactly bytes_needed() bytes) into V.
template <class V>
auto decode_message(wire::bytes_view in) -> result<V> {
    wire::reader r{in};
    auto code = r.read_be<std::uint32_t>();
    if (!code) return std::unexpected{code.error()};
    result<V> out = fail(errc::unknown_command);
    visit_code<V>(*code, [&]<class T>(std::type_identity<T>) {
        auto body = wire::decode<T>(r);
        if (!body) out = std::unexpected{body.error()};
        else if (auto ec = r.expect_end()) out = std::unexpected{ec};
        else out = V{std::move(*body)};
    });
    return out;
}

// Encode one message: its code, then its body.
template <class V>
auto encode_message(V const& msg, wire::bytes_span out) -> result<wire::bytes_view> {
    wire::writer w{out};
    std::visit([&]<class T>(T const& m) {
        w.write_be(code_of<T>());
        wire::encode(w, m);
    }, msg);
    return w.finish();
}

// A request type with no body.
template <auto Code>
struct bare {
    static constexpr auto code = Code;
    static constexpr auto fields = wire::describe();
    friend constexpr auto operator==(bare, bare) noexcept -> bool { return true; }
};

}  // namespace xtpm::proto::detail
