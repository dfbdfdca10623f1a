// Uses the installed core: admit a TPM2_Startup command and build an error response.
#include <xtpm/xtpm.hpp>

#include <array>
#include <cstdio>

int main() {
    std::array<std::byte, 12> cmd{};
    xtpm::wire::writer w{cmd};
    w.write_be(xtpm::wire::tpm_st::no_sessions).write_be(std::uint32_t{12}).write_be(xtpm::wire::tpm_cc::startup)
        .write_be(std::uint16_t{0});
    auto ok = xtpm::wire::parse_command(cmd, xtpm::wire::family::tpm2, 4096);
    std::array<std::byte, 10> out{};
    auto err = xtpm::wire::error_response(xtpm::errc::too_large, xtpm::wire::family::tpm2, out);
    std::printf("%s %zu\n", ok ? "admitted" : "rejected", err.size());
    return ok && err.size() == 10 ? 0 : 1;
}
