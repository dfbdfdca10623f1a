// Property: on both mssim ports, a request the framer calls complete always
// decodes and re-encodes to the same bytes, and one byte less never decodes;
// sizes stay within max_command / max_hash_data; no crash, nothing thrown.
#include <xtpm/proto/mssim.hpp>

#include <vector>

namespace {
template <class Needed, class Decode, class Encode>
void check(xtpm::wire::bytes_view in, Needed needed, Decode decode, Encode encode) {
    auto need = needed(in);
    if (!need) return;
    XTPM_ASSERT(*need <= 9 + xtpm::proto::mssim::max_command);
    if (*need > in.size()) return;
    auto req = decode(in.first(*need));
    XTPM_ASSERT(req.has_value());
    std::vector<std::byte> out(*need);
    auto enc = encode(*req, out);
    XTPM_ASSERT(enc && std::ranges::equal(*enc, in.first(*need)));
    XTPM_ASSERT(!decode(in.first(*need - 1)));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    namespace ms = xtpm::proto::mssim;
    auto const in = std::as_bytes(std::span{data, size});
    check(in, ms::command_bytes_needed, ms::decode_command, ms::encode_command);
    check(in, ms::platform_bytes_needed, ms::decode_platform, ms::encode_platform);
    return 0;
}
