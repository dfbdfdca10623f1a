// locality_policy: a stage that lets commands through only from the allowed
// localities (swtpm --locality reject-locality-4; TIS 1.3 section 5.6: locality
// 4 belongs to the DRTM, not to software). Rejected commands get TPM_RC_LOCALITY
// (TPM 2.0) or TPM_BAD_LOCALITY (TPM 1.2) through errc::bad_locality.
#pragma once

#include <xtpm/stage/concepts.hpp>

namespace xtpm {

struct locality_policy {
    std::uint8_t allowed = 0x1F;  // bit n: locality n may send commands

    static constexpr auto all() noexcept -> locality_policy { return {}; }
    static constexpr auto without_locality_4() noexcept -> locality_policy { return {0x0F}; }

    [[nodiscard]] constexpr auto allows(std::uint8_t locality) const noexcept -> bool {
        return locality <= wire::max_locality && ((allowed >> locality) & 1U) != 0;
    }

    auto on_command(wire::command_view const& cmd) -> result<void> {
        if (!allows(cmd.locality)) return fail(errc::bad_locality);
        return {};
    }
    void on_response(wire::command_view const&, wire::response_view) {}
};

}  // namespace xtpm
