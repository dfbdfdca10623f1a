// The smallest mmio_window: a bus with nothing on it (every read all ones,
// writes lost), which is also what an absent TIS chip looks like.
#pragma once

#include <xtpm/mmio/concepts.hpp>

namespace xtpm::archetypes {

struct mmio {
    auto read8(std::uint8_t, std::uint16_t) -> std::uint8_t { return 0xFF; }
    auto read32(std::uint8_t, std::uint16_t) -> std::uint32_t { return 0xFFFFFFFF; }
    void write8(std::uint8_t, std::uint16_t, std::uint8_t) {}
    void write32(std::uint8_t, std::uint16_t, std::uint32_t) {}
};

}  // namespace xtpm::archetypes
