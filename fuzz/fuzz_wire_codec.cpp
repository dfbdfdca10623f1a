// Property: decoding a declared message either fails having consumed nothing,
// or succeeds and encoding the result gives back exactly the consumed bytes.
#include <xtpm/wire/header.hpp>

#include <algorithm>
#include <vector>

using namespace xtpm::wire;

namespace {
struct pcr_selection {  // TPMS_PCR_SELECTION, TPM 2.0 Part 2 10.6.2
    std::uint16_t hash; sized<std::uint8_t, 4> select;
    static constexpr auto fields = describe(&pcr_selection::hash, &pcr_selection::select);
};
struct pcr_read {  // TPM2_PCR_Read response, Part 3 22.4; digests: TPML_DIGEST
    response_header h; std::uint32_t counter;
    counted<std::uint32_t, pcr_selection, 16> sel; counted<std::uint32_t, sized<std::uint16_t, 64>, 8> digests;
    static constexpr auto fields = describe(&pcr_read::h, &pcr_read::counter, &pcr_read::sel, &pcr_read::digests);
};
struct shapes {  // the other shapes: u64, fixed bytes, a u32-sized buffer, the rest
    std::uint64_t a; fixed_bytes<3> b; sized<std::uint32_t, 4096> c; rest_bytes tail;
    static constexpr auto fields = describe(&shapes::a, &shapes::b, &shapes::c, &shapes::tail);
};

template <class T>
void round_trip(bytes_view in) {
    reader r{in};
    auto const v = decode<T>(r);
    if (!v) return XTPM_ASSERT(r.offset() == 0);  // all-or-nothing
    std::vector<std::byte> out(r.offset());       // exactly the consumed size: encode must fit it
    XTPM_ASSERT(std::ranges::equal(encode_into(out, *v).value_or(bytes_view{}), in.first(r.offset())));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    auto const in = std::as_bytes(std::span{data, size});
    round_trip<command_header>(in), round_trip<pcr_read>(in), round_trip<shapes>(in);
    return 0;
}
