// Replays a fuzz target's corpus without libFuzzer, so GCC builds run every
// committed seed in ctest. Usage: fuzz_x DIR_OR_FILE...
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size);

namespace {
auto replay(std::filesystem::path const& p) -> void {
    std::ifstream in{p, std::ios::binary};
    std::vector<char> bytes{std::istreambuf_iterator<char>{in}, {}};
    // Copy into an exact-size heap buffer so ASan catches reads past the input.
    std::vector<std::uint8_t> exact(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(exact.data(), exact.size());
}
}  // namespace

int main(int argc, char** argv) {
    std::size_t n = 0;
    for (int i = 1; i < argc; ++i) {
        std::filesystem::path const arg{argv[i]};
        if (std::filesystem::is_directory(arg)) {
            for (auto const& e : std::filesystem::recursive_directory_iterator{arg})
                if (e.is_regular_file()) { replay(e.path()); ++n; }
        } else if (std::filesystem::exists(arg)) {
            replay(arg);
            ++n;
        }
    }
    std::printf("replayed %zu inputs\n", n);
    return n == 0 ? 1 : 0;  // an empty corpus is a mistake, not a pass
}
