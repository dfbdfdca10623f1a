// Property: framing any byte stream (TPM 2.0 and 1.2) never reads past it: a
// complete frame lies inside the input with its command inside the frame, a
// prefix of a complete frame is never complete and never disagrees on its size,
// and consuming frames always terminates; no crash, nothing thrown.
#include <xtpm/proto/tpm_stream.hpp>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace xtpm;
    constexpr std::size_t max = 4096;
    for (auto fam : {wire::family::tpm2, wire::family::tpm12}) {
        auto in = std::as_bytes(std::span{data, size});
        while (!in.empty()) {
            auto f = proto::next_frame(in, fam, max);
            if (!f || !f->complete()) break;
            XTPM_ASSERT(f->size <= in.size() && f->size <= max + 9 && f->command.size() >= wire::header_size);
            XTPM_ASSERT(f->command.data() >= in.data() &&
                        f->command.data() + f->command.size() <= in.data() + f->size);
            auto cut = proto::next_frame(in.first(f->size / 2), fam, max);
            XTPM_ASSERT(cut && !cut->complete() && (cut->size == 0 || cut->size == f->size));
            in = in.subspan(f->size);
        }
    }
    return 0;
}
