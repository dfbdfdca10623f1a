#include <xtpm/proto/tpm_stream.hpp>

#include "source/net_client.hpp"

#include <catch2/catch.hpp>

namespace {
using namespace xtpm;
using namespace xtpm::proto;
using test::bytes;
using test::hex;

auto const get_random = test::tpm2_command(0x17B, hex("0008"));
auto const prefixed = test::cat(test::cat(hex("00000008 03"), test::be32(12)), get_random);
constexpr std::size_t max = 4096;

// Feed `stream` in pieces of `chunk` bytes as a server would, collecting complete frames.
auto frames_of(bytes const& stream, std::size_t chunk, wire::family fam = wire::family::tpm2)
    -> std::vector<stream_frame> {
    std::vector<stream_frame> out;
    bytes buffered;
    std::size_t fed = 0;
    while (fed < stream.size() || !buffered.empty()) {
        auto f = next_frame(buffered, fam, max);
        REQUIRE(f.has_value());
        if (!f->complete()) {
            REQUIRE(fed < stream.size());  // wants more and more exists
            if (f->size != 0) CHECK(f->size > buffered.size());
            auto const n = std::min(chunk, stream.size() - fed);
            buffered.insert(buffered.end(), stream.begin() + static_cast<std::ptrdiff_t>(fed),
                            stream.begin() + static_cast<std::ptrdiff_t>(fed + n));
            fed += n;
            continue;
        }
        auto copy = *f;
        copy.command = {};  // the view dies with `buffered`
        out.push_back(copy);
        buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(f->size));
    }
    return out;
}
}  // namespace

TEST_CASE("tpm_stream: raw and mssim-prefixed frames split at every byte boundary", "[source][stream]") {
    auto const stream = test::cat(test::cat(get_random, prefixed), get_random);
    for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
        INFO("chunk " << chunk);
        auto const fs = frames_of(stream, chunk);
        REQUIRE(fs.size() == 3);
        CHECK(fs[0].framing == stream_framing::raw);
        CHECK(fs[0].size == 12);
        CHECK(fs[1].framing == stream_framing::mssim);
        CHECK(fs[1].locality == 3);
        CHECK(fs[1].size == 21);
        CHECK(fs[2].framing == stream_framing::raw);
    }
}

TEST_CASE("tpm_stream: two commands in one read come out one by one", "[source][stream]") {
    auto const two = test::cat(get_random, prefixed);
    auto f = next_frame(two, wire::family::tpm2, max);
    REQUIRE(f.has_value());
    REQUIRE(f->complete());
    CHECK(std::ranges::equal(f->command, get_random));
    auto g = next_frame(wire::bytes_view{two}.subspan(f->size), wire::family::tpm2, max);
    REQUIRE((g && g->complete()));
    CHECK(std::ranges::equal(g->command, get_random));
}

TEST_CASE("tpm_stream: bad size fields and prefixes end the stream", "[source][stream]") {
    auto const err = [](bytes const& in) { return next_frame(in, wire::family::tpm2, max).error(); };
    CHECK(err(hex("8001 ffffffff 0000017b")) == errc::too_large);
    CHECK(err(hex("8001 00001001 0000017b")) == errc::too_large);
    CHECK(err(hex("8001 00000009 0000017b")) == errc::too_small);
    CHECK(err(hex("8001 00000000 0000017b")) == errc::too_small);
    CHECK(err(hex("00000008 00 ffffffff")) == errc::too_large);
    CHECK(err(hex("00000008 00 00000009")) == errc::too_small);
    CHECK(err(hex("00000008 05 0000000c")) == errc::bad_locality);
    CHECK(err(hex("00000008 ff 0000000c")) == errc::bad_locality);
    // Checked as soon as the prefix is in, before any command byte.
    CHECK(next_frame(hex("00000008 00 0000000c"), wire::family::tpm2, max)->size == 21);
}

TEST_CASE("tpm_stream: a prefix disagreeing with the command is framed by the prefix", "[source][stream]") {
    auto in = test::cat(test::cat(hex("00000008 00"), test::be32(13)), test::cat(get_random, hex("00")));
    auto f = next_frame(in, wire::family::tpm2, max);
    REQUIRE((f && f->complete()));
    CHECK(f->command.size() == 13);  // the pipeline answers its size field with TPM_RC_COMMAND_SIZE
}

TEST_CASE("tpm_stream: TPM 1.2 streams have no mssim prefix", "[source][stream]") {
    auto const get_random12 = hex("00c1 0000000e 00000046 00000008");
    CHECK(framing_of(hex("00000008 00 0000000c"), wire::family::tpm12) == stream_framing::raw);
    auto f = next_frame(get_random12, wire::family::tpm12, max);
    REQUIRE((f && f->complete()));
    CHECK(f->framing == stream_framing::raw);
    // Read as a TPM 1.2 header, those bytes are tag 0 and a size of 0x00080000.
    CHECK(next_frame(hex("00000008 00 0000000c 0000"), wire::family::tpm12, max).error() == errc::too_large);
}

TEST_CASE("tpm_stream: replies are framed like their commands", "[source][stream]") {
    std::array<std::byte, 64> buf{};
    auto const resp = hex("8001 0000000a 00000000");
    std::ranges::copy(resp, buf.begin() + reply_headroom);
    CHECK(std::ranges::equal(frame_reply(stream_framing::raw, buf, 10), resp));
    CHECK(std::ranges::equal(frame_reply(stream_framing::mssim, buf, 10),
                             test::cat(test::cat(hex("0000000a"), resp), hex("00000000"))));
    std::array<std::byte, 64> ebuf{};
    CHECK(std::ranges::equal(error_reply(hex("00000008 00 00"), wire::family::tpm2, errc::truncated, ebuf),
                             hex("0000000a 8001 0000000a 00000142 00000000")));
    CHECK(std::ranges::equal(error_reply(hex("00c1 00"), wire::family::tpm12, errc::too_large, ebuf),
                             hex("00c4 0000000a 00000017")));
}

TEST_CASE("tpm_stream: the in-band SetLocality vendor command", "[source][stream]") {
    auto const cmd = test::tpm2_command(0x20001000, hex("03"));
    CHECK(is_set_locality(cmd));
    CHECK_FALSE(is_set_locality(get_random));
    CHECK(decode_set_locality(cmd) == 3);
    CHECK(decode_set_locality(test::tpm2_command(0x20001000)).error() == errc::truncated);
    CHECK(decode_set_locality(test::tpm2_command(0x20001000, hex("05"))).error() == errc::bad_locality);
}
