// Raw access to a tpmif v2 page (struct tpmif_shared_page of xen/io/tpmif.h, xen-vtpm-protocol.md
// 2.1) for a frontend that does what no correct one would: any field, any value, any time,
// including while the backend works. The state byte and the length word are single-copy
// atomic (std::atomic_ref), so a flip is one store the backend sees whole or not at all.
#pragma once

#include <xtpm/proto/tpmif/page.hpp>

#include <atomic>
#include <cstring>
#include <vector>

namespace xtpm::hostile {

namespace tp = proto::tpmif;

class raw_page {
public:
    explicit raw_page(wire::bytes_span first_page) : mem_{first_page} {
        XTPM_ASSERT(mem_.size() == tp::page_size);
    }

    [[nodiscard]] auto state() const -> std::uint8_t {
        return std::to_integer<std::uint8_t>(std::atomic_ref{mem_[tp::state_offset]}.load(std::memory_order_acquire));
    }
    // Release: what was written before is visible with the state (a real frontend's wmb()).
    void set_state(std::uint8_t s) const {
        std::atomic_ref{mem_[tp::state_offset]}.store(std::byte{s}, std::memory_order_release);
    }
    void set_state(tp::page_state s) const { set_state(static_cast<std::uint8_t>(s)); }

    // The length word is 4-aligned at offset 0 of a page-aligned mapping.
    [[nodiscard]] auto length() const -> std::uint32_t { return length_ref().load(std::memory_order_relaxed); }
    void set_length(std::uint32_t v) const { length_ref().store(v, std::memory_order_relaxed); }

    void set_locality(std::uint8_t v) const { mem_[tp::locality_offset] = std::byte{v}; }
    void set_nr_extra_pages(std::uint8_t v) const { mem_[tp::nr_extra_pages_offset] = std::byte{v}; }
    void set_ref(std::size_t i, std::uint32_t ref) const {
        XTPM_ASSERT(tp::header_size + 4 * i + 4 <= tp::page_size);
        std::memcpy(mem_.data() + tp::header_size + 4 * i, &ref, sizeof ref);  // host order, like the struct
    }

    // One byte, single-copy atomic, relaxed (a flip while the backend copies).
    void set_byte(std::size_t at, std::byte v) const { std::atomic_ref{mem_[at]}.store(v, std::memory_order_relaxed); }

    void put(std::size_t at, wire::bytes_view b) const {
        XTPM_ASSERT(at + b.size() <= mem_.size());
        if (!b.empty()) std::memcpy(mem_.data() + at, b.data(), b.size());
    }
    void fill(std::size_t at, std::size_t n, std::byte v) const {
        XTPM_ASSERT(at + n <= mem_.size());
        std::memset(mem_.data() + at, std::to_integer<int>(v), n);
    }
    // A copy of [at, at + n), clamped to the page.
    [[nodiscard]] auto copy(std::size_t at, std::size_t n) const -> std::vector<std::byte> {
        if (at >= mem_.size()) return {};
        n = std::min(n, mem_.size() - at);
        return {mem_.begin() + static_cast<std::ptrdiff_t>(at), mem_.begin() + static_cast<std::ptrdiff_t>(at + n)};
    }

    // A request as a correct frontend writes it, except that every field is ours to choose:
    // locality, nr_extra_pages and refs, payload at 8 + 4n, length, then SUBMIT (release).
    void submit(wire::bytes_view payload, std::uint32_t length, std::uint8_t nr = 0) const {
        set_locality(0);
        set_nr_extra_pages(nr);
        put(tp::header_size + 4 * std::size_t{nr}, payload);
        set_length(length);
        set_state(tp::page_state::submit);
    }

private:
    [[nodiscard]] auto length_ref() const -> std::atomic_ref<std::uint32_t> {
        auto* p = mem_.data() + tp::length_offset;
        XTPM_ASSERT(reinterpret_cast<std::uintptr_t>(p) % alignof(std::uint32_t) == 0);  // the page is page-aligned
        return std::atomic_ref<std::uint32_t>{*std::launder(reinterpret_cast<std::uint32_t*>(p))};  // the u32 field of the Xen struct
    }

    wire::bytes_span mem_;
};

}  // namespace xtpm::hostile
