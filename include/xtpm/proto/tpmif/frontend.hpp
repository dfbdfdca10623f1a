// The frontend end of a tpmif v2 page, sans-I/O: what Linux xen-tpmfront does
// (xen-vtpm-protocol.md 3.1, 3.4, 3.5, 6.2, 6.3), plus the extra-pages extension.
// The caller owns the grant, the event channel and the clock: it waits for can_submit()
// (Linux: timeout_c), submits, notifies, and polls until command_duration() runs out,
// then cancels.
#pragma once

#include <xtpm/proto/tpmif/page.hpp>
#include <xtpm/wire/header.hpp>

#include <array>

namespace xtpm::proto::tpmif {

enum class poll_status : std::uint8_t {
    pending,   // SUBMIT, CANCEL or a value no end may write (Linux status 0): keep waiting
    finished,  // FINISH: `response` holds the copied response
    canceled,  // IDLE: the backend dropped the command (Linux -ECANCELED)
};

struct poll_result {
    poll_status status = poll_status::pending;
    wire::bytes_view response;  // finished only: a copy in the caller's buffer
};

// Not checked by the compiler: `region` is the granted mapping (the first page and,
// once set_extra_pages() was called, the extra pages after it, contiguous).
class frontend_channel {
public:
    // List these refs in every request (the extension was negotiated and the pages are
    // granted to the backend and mapped after the first page).
    auto set_extra_pages(std::span<grant_ref const> refs) noexcept -> result<void> {
        if (refs.size() > max_extra_pages) return fail(errc::too_large);
        std::ranges::copy(refs, refs_.begin());
        nr_ = static_cast<std::uint8_t>(refs.size());
        return {};
    }

    // Linux's "IDLE bit": the previous exchange is over (IDLE or FINISH).
    [[nodiscard]] auto can_submit(wire::bytes_span region) const noexcept -> bool {
        auto const s = detail::load_state(region);
        return s == static_cast<std::uint8_t>(page_state::idle) || s == static_cast<std::uint8_t>(page_state::finish);
    }

    // The largest command this region carries.
    [[nodiscard]] auto capacity(wire::bytes_span region) const noexcept -> std::size_t {
        return static_cast<std::size_t>(usable_size(region.size(), nr_) - data_offset(nr_));
    }

    // Copy in, length, SUBMIT with release ordering (section 3.1). On success a notify is due.
    auto submit(wire::bytes_span region, wire::bytes_view cmd, std::uint8_t locality = 0) noexcept
        -> result<void> {
        XTPM_ASSERT(region.size() >= page_size);
        if (cmd.size() > capacity(region)) return fail(errc::too_large);  // Linux -EINVAL
        if (locality > wire::max_locality) return fail(errc::bad_locality);
        if (!can_submit(region)) return fail(errc::busy);
        auto const offset = static_cast<std::size_t>(data_offset(nr_));
        detail::store_u8(region, locality_offset, locality);
        detail::store_u8(region, pad_offset, 0);
        detail::store_u8(region, nr_extra_pages_offset, nr_);
        for (std::size_t i = 0; i < nr_; ++i) detail::store_u32(region, header_size + 4 * i, refs_[i]);
        if (!cmd.empty()) std::memcpy(region.data() + offset, cmd.data(), cmd.size());
        detail::store_u32(region, length_offset, static_cast<std::uint32_t>(cmd.size()));
        detail::store_state(region, page_state::submit);
        in_flight_ = true;
        return {};
    }

    // Look at the page once (section 3.4, vtpm_recv). A finished response is copied into
    // `out`, its length clamped to the region and to `out`, and validated as the Linux
    // TPM core does: at least a header (errc::too_small) whose size field equals the
    // bytes received (errc::size_mismatch). errc::busy if nothing was submitted.
    auto poll(wire::bytes_span region, wire::bytes_span out) noexcept -> result<poll_result> {
        XTPM_ASSERT(region.size() >= page_size);
        if (!in_flight_) return fail(errc::busy);
        auto const s = detail::load_state(region);  // acquire: the response is visible
        if (s == static_cast<std::uint8_t>(page_state::idle)) {
            in_flight_ = false;
            return poll_result{poll_status::canceled, {}};
        }
        if (s != static_cast<std::uint8_t>(page_state::finish)) return poll_result{};
        in_flight_ = false;
        auto const offset = static_cast<std::size_t>(data_offset(nr_));  // ours, not the page's
        std::uint64_t n = detail::load_u32(region, length_offset);       // the one read of length
        n = std::min<std::uint64_t>({n, capacity(region), out.size()});
        auto const len = static_cast<std::size_t>(n);
        if (len != 0) std::memcpy(out.data(), region.data() + offset, len);
        auto const resp = wire::bytes_view{out.first(len)};
        if (len < wire::header_size) return fail(errc::too_small);
        if (wire::load_be<std::uint32_t>(resp.subspan(2, 4)) != len) return fail(errc::size_mismatch);
        return poll_result{poll_status::finished, resp};
    }

    // Store CANCEL (Linux vtpm_cancel); a notify is due. The backend answers IDLE
    // (canceled) or a late FINISH; poll() reports either.
    void cancel(wire::bytes_span region) noexcept {
        XTPM_ASSERT(region.size() >= page_size);
        detail::store_state(region, page_state::cancel);
    }

    [[nodiscard]] auto in_flight() const noexcept -> bool { return in_flight_; }
    [[nodiscard]] auto extra_pages() const noexcept -> std::size_t { return nr_; }

private:
    std::array<grant_ref, max_extra_pages> refs_{};
    std::uint8_t nr_ = 0;
    bool in_flight_ = false;
};

}  // namespace xtpm::proto::tpmif
