// Small helpers the bench programs share: strict number parsing for options,
// table formatting, and finding a program (swtpm, the role binaries).
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <unistd.h>

namespace xtpm::bench {

// A decimal in [lo, hi], digits only; nullopt otherwise.
inline auto parse_uint(std::string_view s, unsigned lo, unsigned hi) -> std::optional<unsigned> {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
    return v;
}

// A table cell: the value in printf format `f`, or "-" when absent.
inline auto fmt(std::optional<double> v, char const* f = "%.2f") -> std::string {
    if (!v) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, f, *v);
    return buf;
}

inline auto executable(std::filesystem::path const& p) -> bool {
    return !p.empty() && ::access(p.c_str(), X_OK) == 0;
}

// A command name resolved through $PATH, or a path taken as is.
inline auto find_program(std::string const& name) -> std::optional<std::filesystem::path> {
    namespace fs = std::filesystem;
    if (name.find('/') != std::string::npos) return executable(name) ? std::optional<fs::path>{name} : std::nullopt;
    char const* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/bin:/bin";
    while (!rest.empty()) {
        auto const colon = rest.find(':');
        fs::path const dir{std::string{rest.substr(0, colon)}};
        rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
        if (executable(dir / name)) return dir / name;
    }
    return std::nullopt;
}

}  // namespace xtpm::bench
