// Property: for any bytes, a request bytes_needed() calls complete always
// decodes, and re-encodes to exactly the bytes it came from; the size it asks
// for never exceeds the named limits; no crash, no leak, nothing thrown.
#include <xtpm/proto/swtpm_ctrl.hpp>

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    namespace sw = xtpm::proto::swtpm;
    auto const in = std::as_bytes(std::span{data, size});
    auto need = sw::bytes_needed(in);
    if (!need) return 0;
    XTPM_ASSERT(*need <= 16 + sw::max_state_blob);
    if (*need > size) return 0;
    auto const whole = in.first(*need);
    auto req = sw::decode_request(whole);
    XTPM_ASSERT(req.has_value());
    std::vector<std::byte> out(whole.size());
    auto enc = sw::encode_request(*req, out);
    XTPM_ASSERT(enc && std::ranges::equal(*enc, whole));
    XTPM_ASSERT(!sw::decode_request(in.first(*need - 1)));  // one byte short never decodes
    return 0;
}
