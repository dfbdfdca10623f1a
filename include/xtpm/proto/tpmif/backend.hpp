// The backend end of a tpmif v2 page, sans-I/O (xen-vtpm-protocol.md 3.2, 3.3, 3.5,
// 3.8 and the checklist of section 9). Unlike Mini-OS tpmback, every request is answered:
// a malformed one gets a well-formed TPM error response and FINISH, never silence.
// The caller owns the mapping, the event channel and the device; this class only reads
// and writes the page, each field once per request.
#pragma once

#include <xtpm/proto/tpmif/page.hpp>
#include <xtpm/wire/error_response.hpp>

#include <array>
#include <variant>

namespace xtpm::proto::tpmif {

struct backend_options {
    wire::family family = wire::family::tpm2;  // the tag of the error responses we write
    bool extra_pages = false;                  // feature-extra-pages negotiated by both ends
};

// What one event on the channel asks of the I/O layer.
struct spurious {};  // nothing to do (state not ours to act on, or already handled)
struct request {     // run `command` (a copy in the caller's buffer), then complete()
    wire::bytes_view command;
    std::uint8_t locality = 0;  // as the page said; the pipeline checks the range
};
struct malformed {  // already answered with an error response and FINISH: notify
    std::error_code error;
};
struct cancel_acked {};      // CANCEL while idle: IDLE stored, notify
struct cancel_device {};     // CANCEL while busy: cancel the device; complete() still FINISHes
struct map_pages {           // map these refs contiguously after the first page, then on_pages_mapped()
    std::array<grant_ref, max_extra_pages> refs{};
    std::uint8_t count = 0;
    [[nodiscard]] auto view() const noexcept -> std::span<grant_ref const> { return {refs.data(), count}; }
};
using backend_action = std::variant<spurious, request, malformed, cancel_acked, cancel_device, map_pages>;

// Whether the action requires an event-channel notify now.
constexpr auto notify_due(backend_action const& a) noexcept -> bool {
    return std::holds_alternative<malformed>(a) || std::holds_alternative<cancel_acked>(a);
}

// One channel, one request at a time. Not checked by the compiler:
//  - `region` is the whole mapping: the first page, followed by the extra pages once
//    mapped; its size is a multiple of page_size;
//  - `buffer` holds the vTPM's largest command; a request larger than it is malformed;
//  - after `request`, the caller calls complete() exactly once, even if the device
//    fails (with an error response) or was canceled;
//  - after `map_pages`, the caller calls on_pages_mapped() or on_pages_unavailable().
class backend_channel {
public:
    explicit backend_channel(backend_options opts = {}) noexcept : opts_{opts} {}

    // An event arrived (or the channel was just bound: Xen marks the port pending, doc 2.5).
    auto on_event(wire::bytes_span region, wire::bytes_span buffer) noexcept -> backend_action {
        XTPM_ASSERT(region.size() >= page_size);
        auto const state = detail::load_state(region);  // acquire: the request is visible
        if (state == static_cast<std::uint8_t>(page_state::cancel)) return on_cancel(region);
        if (state != static_cast<std::uint8_t>(page_state::submit) || phase_ != phase::idle) return spurious{};
        // The header snapshot: each field read once, here, and never again for this request.
        nr_ = detail::load_u8(region, nr_extra_pages_offset);
        length_ = detail::load_u32(region, length_offset);
        locality_ = detail::load_u8(region, locality_offset);
        if (nr_ == 0) return pick_up(region, buffer);
        if (!opts_.extra_pages) return answer_error(region, errc::bad_value);  // must be 0 without the feature
        if (nr_ > max_extra_pages) return answer_error(region, errc::too_large);
        map_pages m;
        m.count = nr_;
        for (std::size_t i = 0; i < nr_; ++i)
            m.refs[i] = detail::load_u32(region, header_size + 4 * i);  // inside the first page: 8 + 4*1
        phase_ = phase::mapping;
        return m;
    }

    // The refs of the last map_pages are mapped after the first page of `region`.
    auto on_pages_mapped(wire::bytes_span region, wire::bytes_span buffer) noexcept -> backend_action {
        XTPM_ASSERT(phase_ == phase::mapping && region.size() >= page_size);
        phase_ = phase::idle;
        return pick_up(region, buffer);
    }

    // The refs could not be mapped (bogus, read-only, not granted to us).
    auto on_pages_unavailable(wire::bytes_span region) noexcept -> backend_action {
        XTPM_ASSERT(phase_ == phase::mapping && region.size() >= page_size);
        phase_ = phase::idle;
        return answer_error(region, errc::bad_value);
    }

    // Publish the response of the current request: length, payload at the data offset
    // of the snapshot (nr_extra_pages is not read again), then FINISH with release
    // ordering. A response that does not fit is replaced by a TPM error response, so
    // the frontend is never left waiting. Returns whether a notify is due (always).
    auto complete(wire::bytes_span region, wire::bytes_view response) noexcept -> bool {
        XTPM_ASSERT(phase_ == phase::busy && region.size() >= page_size);
        phase_ = phase::idle;
        cancel_requested_ = false;
        if (response.size() > usable_size(region.size(), nr_) - data_offset(nr_)) {  // offset <= 1028 < usable
            write_error(region, errc::buffer_full);
            return true;
        }
        write_response(region, response);
        return true;
    }

    // Whether on_event() would act on the page now (a SUBMIT while idle, or a CANCEL): one
    // acquire load, for looking at the page without an event (io/spin.hpp).
    [[nodiscard]] auto wants_service(wire::bytes_span region) const noexcept -> bool {
        auto const state = detail::load_state(region);
        return state == static_cast<std::uint8_t>(page_state::cancel) ||
               (state == static_cast<std::uint8_t>(page_state::submit) && phase_ == phase::idle);
    }

    // The frontend asked to cancel the request now being served.
    [[nodiscard]] auto cancel_requested() const noexcept -> bool { return cancel_requested_; }
    [[nodiscard]] auto busy() const noexcept -> bool { return phase_ != phase::idle; }
    [[nodiscard]] auto options() const noexcept -> backend_options const& { return opts_; }

    // A new connection (the frontend closed and reopened): forget the request in flight.
    void reset(backend_options opts) noexcept {
        *this = backend_channel{opts};
    }

private:
    enum class phase : std::uint8_t { idle, mapping, busy };

    auto on_cancel(wire::bytes_span region) noexcept -> backend_action {
        if (phase_ != phase::idle) {
            if (cancel_requested_) return spurious{};  // the device was already asked
            cancel_requested_ = true;
            return cancel_device{};
        }
        // CAS, not a store: a SUBMIT written after the CANCEL we saw must not be lost.
        if (!detail::exchange_state(region, page_state::cancel, page_state::idle)) return spurious{};
        return cancel_acked{};
    }

    // Copy the payload out (section 3.2), every bound checked in 64-bit arithmetic.
    auto pick_up(wire::bytes_span region, wire::bytes_span buffer) noexcept -> backend_action {
        auto const offset = data_offset(nr_);
        auto const usable = usable_size(region.size(), nr_);
        if (offset > usable || length_ > usable - offset) return answer_error(region, errc::too_large);
        if (length_ > buffer.size()) return answer_error(region, errc::too_large);
        if (length_ != 0) std::memcpy(buffer.data(), region.data() + offset, length_);  // the one read of the payload
        phase_ = phase::busy;
        return request{buffer.first(length_), locality_};
    }

    auto answer_error(wire::bytes_span region, errc e) noexcept -> backend_action {
        cancel_requested_ = false;  // a CANCEL seen while mapping is answered by this FINISH
        write_error(region, e);
        return malformed{make_error_code(e)};
    }

    void write_error(wire::bytes_span region, errc e) noexcept {
        std::array<std::byte, wire::header_size> buf{};
        write_response(region, wire::error_response(make_error_code(e), opts_.family, buf));
    }

    // nr_ <= 255 here, so offset + 10 <= 1038 always fits the first page.
    void write_response(wire::bytes_span region, wire::bytes_view response) noexcept {
        auto const offset = static_cast<std::size_t>(data_offset(nr_));
        detail::store_u32(region, length_offset, static_cast<std::uint32_t>(response.size()));
        if (!response.empty()) std::memcpy(region.data() + offset, response.data(), response.size());
        detail::store_state(region, page_state::finish);
    }

    backend_options opts_;
    phase phase_ = phase::idle;
    bool cancel_requested_ = false;
    // The header snapshot of the request being served.
    std::uint8_t nr_ = 0;
    std::uint8_t locality_ = 0;
    std::uint32_t length_ = 0;
};

}  // namespace xtpm::proto::tpmif
