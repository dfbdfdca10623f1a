// What the hostile frontend demands of every answer on the page: the backend stores FINISH
// and notifies within the bound, the response sits at the request's data offset (8 + 4n),
// the page's length equals the TPM header's size field and the header is a TPM 2.0 response
// (xen-vtpm-protocol.md 3.3, 3.4, 9; docs/tpmif.md "Error answers").
#pragma once

#include "guest.hpp"
#include "tpm2_messages.hpp"
#include "wire/hex.hpp"

#include <cinttypes>

namespace xtpm::hostile {

struct answer {
    std::uint32_t length = 0;     // the page's length field
    std::vector<std::byte> bytes; // `length` bytes from the data offset
    wire::response_header header{};

    [[nodiscard]] auto rc() const -> std::uint32_t { return static_cast<std::uint32_t>(header.rc); }
};

inline auto hex32(std::uint32_t v) -> std::string {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%" PRIX32, v);
    return buf;
}

using test::to_hex;

// The response the backend wrote at `offset`, or why it is malformed.
inline auto read_answer(raw_page const& pg, std::size_t offset) -> outcome<answer> {
    answer a;
    a.length = pg.length();
    if (a.length > tp::page_size - offset)
        return failure("response length " + hex32(a.length) + " runs past the page at offset " + std::to_string(offset));
    a.bytes = pg.copy(offset, a.length);
    auto h = wire::parse_response(a.bytes);
    if (!h) return failure("malformed response (" + text(h.error()) + "), length " + std::to_string(a.length));
    if (wire::response_family(h->tag) != wire::family::tpm2)
        return failure("response tag " + hex32(static_cast<std::uint32_t>(h->tag)) + " is not TPM 2.0");
    a.header = *h;
    return a;
}

// The answer's header by its own size field, ignoring the page's length (which a frontend
// that flips it may have overwritten after the backend wrote it).
inline auto read_answer_by_header(raw_page const& pg, std::size_t offset) -> outcome<answer> {
    auto head = pg.copy(offset, wire::header_size);
    auto const size = wire::load_be<std::uint32_t>(wire::bytes_view{head}.subspan(2, 4));
    if (size < wire::header_size || size > tp::page_size - offset)
        return failure("response header size " + hex32(size) + " out of range");
    answer a;
    a.length = pg.length();
    a.bytes = pg.copy(offset, size);
    auto h = wire::parse_response(a.bytes);
    if (!h || wire::response_family(h->tag) != wire::family::tpm2)
        return failure("malformed response header " + hex32(static_cast<std::uint32_t>(h ? h->tag : wire::tpm_st{})));
    a.header = *h;
    return a;
}

// One raw exchange: the request written as given (any length, any nr_extra_pages), SUBMIT,
// notify, then FINISH and a notify within the bound, and a well-formed answer at 8 + 4n.
inline auto exchange(guest& g, wire::bytes_view payload, std::uint32_t length, std::uint8_t nr = 0)
    -> outcome<answer> {
    auto pg = g.page();
    g.drain_events();
    pg.submit(payload, length, nr);
    if (auto n = g.notify(); !n) return failure(n.error());
    auto [end, raw] = g.await_done();
    if (!end) return failure("no FINISH within " + std::to_string(g.limit().count()) + " ms (state " + std::to_string(raw) + ")");
    if (end->state != tp::page_state::finish) return failure("backend stored IDLE: the request was dropped, not answered");
    if (!end->notified) return failure("FINISH stored without an event-channel notify");
    return read_answer(pg, tp::header_size + 4 * std::size_t{nr});
}

// A 10-byte TPM error response, with rc `want` when given.
inline auto expect_error(answer const& a, std::optional<std::uint32_t> want = {}) -> outcome<> {
    if (a.rc() == 0) return failure("answered success (" + std::to_string(a.length) + " bytes), an error was required");
    if (a.length != wire::header_size) return failure("error answer of " + std::to_string(a.length) + " bytes, not 10");
    if (want && a.rc() != *want) return failure("rc " + hex32(a.rc()) + ", required " + hex32(*want));
    return {};
}

// A successful GetRandom(n): header, TPM2B_DIGEST of exactly n bytes.
inline auto expect_random(wire::bytes_view resp, std::uint16_t n) -> outcome<> {
    auto r = wire::decode_all<get_random_response>(resp);
    if (!r) return failure("GetRandom response does not parse: " + text(r.error()));
    if (r->header.rc != wire::tpm_rc::success) return failure("GetRandom failed with rc " + hex32(static_cast<std::uint32_t>(r->header.rc)));
    if (r->random.data.size() != n) return failure("GetRandom(" + std::to_string(n) + ") returned " + std::to_string(r->random.data.size()) + " bytes");
    return {};
}

// The channel still carries an ordinary command after whatever came before.
inline auto still_serves(guest& g) -> outcome<> {
    auto r = g.transact(get_random(16));
    if (!r) return failure("a correct GetRandom(16) afterwards failed: " + r.error());
    if (auto ok = expect_random(*r, 16); !ok) return failure("a correct GetRandom(16) afterwards: " + ok.error());
    return {};
}

// The digests PCR_Event(TPM_RH_NULL) returns for `event`, asked the well-behaved way.
inline auto event_digests_of(guest& g, wire::bytes_view event) -> outcome<std::vector<bank_digest>> {
    auto r = g.transact(pcr_event(event));
    if (!r) return failure("PCR_Event: " + r.error());
    auto d = event_digests(*r);
    if (!d) return failure("PCR_Event response does not parse (rc " + hex32(static_cast<std::uint32_t>(wire::response_view{*r}.rc())) + ")");
    return *d;
}

}  // namespace xtpm::hostile
