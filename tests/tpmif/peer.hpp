// Test helpers for the tpmif channels: a page (or pages) in plain memory and a "peer"
// that pokes the header fields the way a hostile other end would.
#pragma once

#include <xtpm/proto/tpmif.hpp>

#include <algorithm>
#include <cstring>
#include <vector>

namespace xtpm::test {

namespace tp = proto::tpmif;

struct page_peer {
    explicit page_peer(std::size_t pages = 1) : mem(pages * tp::page_size) {}

    std::vector<std::byte> mem;

    auto region() -> wire::bytes_span { return mem; }
    auto first_page() -> wire::bytes_span { return wire::bytes_span{mem}.first(tp::page_size); }

    void set_length(std::uint32_t v) { std::memcpy(mem.data() + tp::length_offset, &v, 4); }
    auto length() const -> std::uint32_t {
        std::uint32_t v;
        std::memcpy(&v, mem.data() + tp::length_offset, 4);
        return v;
    }
    void set_state(std::uint8_t s) { mem[tp::state_offset] = std::byte{s}; }
    void set_state(tp::page_state s) { set_state(static_cast<std::uint8_t>(s)); }
    auto state() const -> std::uint8_t { return std::to_integer<std::uint8_t>(mem[tp::state_offset]); }
    void set_locality(std::uint8_t l) { mem[tp::locality_offset] = std::byte{l}; }
    auto locality() const -> std::uint8_t { return std::to_integer<std::uint8_t>(mem[tp::locality_offset]); }
    void set_nr(std::uint8_t n) { mem[tp::nr_extra_pages_offset] = std::byte{n}; }
    auto nr() const -> std::uint8_t { return std::to_integer<std::uint8_t>(mem[tp::nr_extra_pages_offset]); }
    void set_ref(std::size_t i, std::uint32_t r) { std::memcpy(mem.data() + tp::header_size + 4 * i, &r, 4); }
    auto ref(std::size_t i) const -> std::uint32_t {
        std::uint32_t v;
        std::memcpy(&v, mem.data() + tp::header_size + 4 * i, 4);
        return v;
    }
    auto at(std::size_t offset, std::size_t n) -> wire::bytes_span { return wire::bytes_span{mem}.subspan(offset, n); }
    void put(std::size_t offset, wire::bytes_view b) {
        std::ranges::copy(b, mem.begin() + static_cast<std::ptrdiff_t>(offset));
    }

    // A frontend's request as Linux writes it: payload at 8 + 4n, length, SUBMIT.
    void submit(wire::bytes_view cmd, std::uint8_t locality = 0, std::uint8_t nr = 0) {
        set_nr(nr);
        set_locality(locality);
        put(tp::header_size + 4 * std::size_t{nr}, cmd);
        set_length(static_cast<std::uint32_t>(cmd.size()));
        set_state(tp::page_state::submit);
    }
};

// A TPM command of `size` bytes with a consistent header (tag, size, code) and a
// recognisable body.
inline auto command(std::size_t size, std::uint16_t tag = 0x8001, std::uint32_t code = 0x17B) -> std::vector<std::byte> {
    std::vector<std::byte> c(size);
    for (std::size_t i = 0; i < size; ++i) c[i] = static_cast<std::byte>(i * 7 + 3);
    if (size >= 10) {
        wire::store_be<std::uint16_t>(c, tag);
        wire::store_be<std::uint32_t>(std::span{c}.subspan(2), static_cast<std::uint32_t>(size));
        wire::store_be<std::uint32_t>(std::span{c}.subspan(6), code);
    }
    return c;
}

// A TPM response of `size` bytes: tag 0x8001, size field, rc 0.
inline auto response(std::size_t size) -> std::vector<std::byte> { return command(size, 0x8001, 0); }

}  // namespace xtpm::test
