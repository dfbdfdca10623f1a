// The tpmif v2 shared page as both ends see it: layout from Xen's public header
// xen/io/tpmif.h (struct tpmif_shared_page, enum tpmif_state), the extra-pages
// extension, and the only primitives that touch the page (xen-vtpm-protocol.md 2.1-2.4).
// The page is memory a hostile peer writes concurrently: the state byte is accessed
// through std::atomic_ref (acquire/release), every other field is copied out once.
#pragma once

#include <cstdint>  // the Xen public headers do not include it themselves
#include <xen/io/tpmif.h>

#include <xtpm/wire/reader.hpp>

#include <atomic>
#include <cstddef>
#include <cstring>

namespace xtpm::proto::tpmif {

using grant_ref = std::uint32_t;  // grant_ref_t in xen/grant_table.h

// One Xen page: the granted region is always a whole number of them.
inline constexpr std::size_t page_size = 4096;

// Header fields, placed where Xen's struct puts them (not where the header's comment
// table draws them: that table says 16, the struct and every implementation say 8).
inline constexpr std::size_t length_offset = offsetof(tpmif_shared_page, length);
inline constexpr std::size_t state_offset = offsetof(tpmif_shared_page, state);
inline constexpr std::size_t locality_offset = offsetof(tpmif_shared_page, locality);
inline constexpr std::size_t pad_offset = offsetof(tpmif_shared_page, pad);
inline constexpr std::size_t nr_extra_pages_offset = offsetof(tpmif_shared_page, nr_extra_pages);
inline constexpr std::size_t header_size = sizeof(tpmif_shared_page);
static_assert(header_size == 8 && length_offset == 0 && state_offset == 4 && locality_offset == 5 &&
              pad_offset == 6 && nr_extra_pages_offset == 7);

// Largest packet without extra pages: 4096 - 8 (the 2013 commit message, doc 2.4).
inline constexpr std::size_t single_page_capacity = page_size - header_size;

// nr_extra_pages is a u8, so a hostile page names at most 255 refs and its data
// offset is at most 8 + 4*255 = 1028: always inside the first page.
inline constexpr std::size_t max_nr_extra_pages_field = 255;

// xtpm's bound for the extra-pages extension (docs/tpmif.md). The largest buffer any
// TPM we serve advertises is 4096 bytes (libtpms' maximum for both families, the PTP
// value of hardware TPMs); 8 + 4*1 + 4096 fits two pages, so one extra page suffices.
// A larger count is refused rather than mapped: it would only let a guest make the
// backend map memory that no command can use.
inline constexpr std::size_t max_extra_pages = 1;
static_assert(header_size + 4 * max_extra_pages + 4096 <= (1 + max_extra_pages) * page_size);

enum class page_state : std::uint8_t {
    idle = TPMIF_STATE_IDLE,      // written by the backend: nothing pending / cancel acknowledged
    submit = TPMIF_STATE_SUBMIT,  // written by the frontend: request present
    finish = TPMIF_STATE_FINISH,  // written by the backend: response present
    cancel = TPMIF_STATE_CANCEL,  // written by the frontend: abort requested
};

// Where the packet starts when `n` grant refs follow the header (every implementation
// computes it this way, doc 2.1). 64-bit so that no input can wrap it.
constexpr auto data_offset(std::size_t n) noexcept -> std::uint64_t {
    return std::uint64_t{header_size} + 4 * std::uint64_t{n};
}

// Bytes of the region one exchange may use: the first page plus the `n` extra pages the
// request names, never more than is mapped. A cached mapping with more pages does not
// widen a request that names fewer.
constexpr auto usable_size(std::size_t region_size, std::size_t n) noexcept -> std::uint64_t {
    auto const named = (1 + std::uint64_t{n}) * page_size;
    return named < region_size ? named : std::uint64_t{region_size};
}

namespace detail {

// The state byte is the only field both ends write; a lock-free atomic_ref makes its
// accesses well-defined across threads and processes mapping the same page.
static_assert(std::atomic_ref<std::byte>::is_always_lock_free);

inline auto state_ref(wire::bytes_span region) noexcept -> std::atomic_ref<std::byte> {
    return std::atomic_ref<std::byte>{region[state_offset]};
}

inline auto load_state(wire::bytes_span region) noexcept -> std::uint8_t {
    return std::to_integer<std::uint8_t>(state_ref(region).load(std::memory_order_acquire));
}

// Release: the length and payload written before become visible with the new state.
inline void store_state(wire::bytes_span region, page_state s) noexcept {
    state_ref(region).store(static_cast<std::byte>(s), std::memory_order_release);
}

inline auto exchange_state(wire::bytes_span region, page_state from, page_state to) noexcept -> bool {
    auto expected = static_cast<std::byte>(from);
    return state_ref(region).compare_exchange_strong(expected, static_cast<std::byte>(to),
                                                     std::memory_order_acq_rel, std::memory_order_acquire);
}

// Header integers are host order (little-endian on x86), not TPM big-endian. One
// memcpy is one read: the caller keeps the value and never reads the field again.
inline auto load_u32(wire::bytes_span region, std::size_t at) noexcept -> std::uint32_t {
    std::uint32_t v;
    std::memcpy(&v, region.data() + at, sizeof v);
    return v;
}

inline void store_u32(wire::bytes_span region, std::size_t at, std::uint32_t v) noexcept {
    std::memcpy(region.data() + at, &v, sizeof v);
}

inline auto load_u8(wire::bytes_span region, std::size_t at) noexcept -> std::uint8_t {
    return std::to_integer<std::uint8_t>(region[at]);
}

inline void store_u8(wire::bytes_span region, std::size_t at, std::uint8_t v) noexcept {
    region[at] = static_cast<std::byte>(v);
}

}  // namespace detail
}  // namespace xtpm::proto::tpmif
