// Property: frame_size, parse_command (both families, every locality byte) and
// parse_response never crash; when parse_command accepts, the view is the whole
// input, frame_size agrees, and re-encoding the header gives the first 10 bytes.
#include <xtpm/wire/header.hpp>

#include <algorithm>
#include <array>

using namespace xtpm::wire;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    auto const in = std::as_bytes(std::span{data, size});
    constexpr std::size_t max = 4096;  // libtpms's default TPM buffer (toolchain.md section 5)
    auto const framed = frame_size(in, max);
    auto const locality = static_cast<std::uint8_t>(size > 10 ? data[10] % 8 : 0);  // 5-7: refused
    for (auto const fam : {family::tpm12, family::tpm2}) {
        auto const v = parse_command(in, fam, max, locality);
        if (!v) continue;
        XTPM_ASSERT(v->bytes.data() == in.data() && v->bytes.size() == size);
        XTPM_ASSERT(v->fam == fam && command_family(v->header.tag) == fam && locality <= max_locality);
        XTPM_ASSERT(framed && *framed == size);
        std::array<std::byte, header_size> hdr{};
        auto const again = encode_into(hdr, v->header);
        XTPM_ASSERT(again && std::ranges::equal(*again, in.first(header_size)));
    }
    if (auto const r = parse_response(in)) XTPM_ASSERT(r->size == size && response_family(r->tag));
    return 0;
}
