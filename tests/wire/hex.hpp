// Test helpers for the wire tests: bytes from a hex string and back, so golden
// vectors read like the spec examples and a failed CHECK prints readable hex.
#pragma once

#include <xtpm/wire/reader.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace xtpm::test {

// "80 01 00 0c" or "8001000c": whitespace is ignored; a malformed string is a bug in the test.
inline auto hex(std::string_view s) -> std::vector<std::byte> {
    auto nibble = [](char c) -> unsigned {
        if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
        if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
        if (c >= 'A' && c <= 'F') return static_cast<unsigned>(c - 'A' + 10);
        XTPM_ASSERT(false && "a hex digit");
        return 0;
    };
    std::string digits;
    for (char c : s)
        if (c != ' ' && c != '\n') digits.push_back(c);
    XTPM_ASSERT(digits.size() % 2 == 0);
    std::vector<std::byte> out;
    for (std::size_t i = 0; i < digits.size(); i += 2)
        out.push_back(static_cast<std::byte>(nibble(digits[i]) << 4 | nibble(digits[i + 1])));
    return out;
}

inline auto to_hex(wire::bytes_view b) -> std::string {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (auto x : b) {
        out.push_back(digits[std::to_integer<unsigned>(x) >> 4]);
        out.push_back(digits[std::to_integer<unsigned>(x) & 0xF]);
    }
    return out;
}

}  // namespace xtpm::test
