// Property: from any page bytes, the tpmif backend never reads or writes outside the
// region (exact-size heap buffers for ASan), picks up at most the buffer's size, and
// every malformed request is answered: FINISH with a response that parses; a request's
// response FINISHes too. Input: u8 flags (bit0 feature, bit1 TPM 1.2, bit2 two pages,
// bit3 small buffer, bit4 map fails), then the page bytes (zero-padded).
#include <xtpm/proto/tpmif/backend.hpp>

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    namespace tp = xtpm::proto::tpmif;
    if (size == 0) return 0;
    auto const flags = data[0];
    std::vector<std::byte> region(((flags & 4) ? 2 : 1) * tp::page_size);
    std::vector<std::byte> buf((flags & 8) ? 64 : 4096);
    auto const in = std::as_bytes(std::span{data + 1, size - 1});
    std::copy_n(in.begin(), std::min(in.size(), region.size()), region.begin());
    tp::backend_channel be{{(flags & 2) ? xtpm::wire::family::tpm12 : xtpm::wire::family::tpm2, (flags & 1) != 0}};
    auto a = be.on_event(std::span{region}.first(tp::page_size), buf);
    if (std::holds_alternative<tp::map_pages>(a))
        a = (flags & 16) ? be.on_pages_unavailable(region) : be.on_pages_mapped(region, buf);
    auto const nr = std::to_integer<std::size_t>(region[tp::nr_extra_pages_offset]);  // the backend never writes it
    std::uint32_t len = 0;
    if (auto const* req = std::get_if<tp::request>(&a)) {
        XTPM_ASSERT(req->command.size() <= buf.size() && req->command.data() == buf.data());
        XTPM_ASSERT(be.complete(region, req->command));  // an echo fits where the command did
        std::memcpy(&len, region.data(), 4);
        XTPM_ASSERT(len == req->command.size());
    } else if (std::holds_alternative<tp::malformed>(a)) {
        std::memcpy(&len, region.data(), 4);
        XTPM_ASSERT(len == 10 && xtpm::wire::parse_response(std::span{region}.subspan(8 + 4 * nr, len)));
    } else {
        return 0;
    }
    XTPM_ASSERT(region[tp::state_offset] == std::byte{TPMIF_STATE_FINISH});
    return 0;
}
