// xtpm build-wide configuration: the version and the one assertion macro.
// This is the only header that defines macros (style.md).
#pragma once

#include <cstdio>
#include <cstdlib>

#define XTPM_VERSION "0.1.0"

// XTPM_ASSERT is for programming errors only, never for input validation:
// bad input is answered with an errc or a TPM error response.
#define XTPM_ASSERT(cond)                                                              \
    ((cond) ? static_cast<void>(0)                                                     \
            : (std::fprintf(stderr, "xtpm: assertion failed: %s (%s:%d)\n", #cond,     \
                            __FILE__, __LINE__),                                       \
               std::abort()))
