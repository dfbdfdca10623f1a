// The state_store concept: durable named blobs that hold a TPM's state
// (libtpms's "permall", "volatilestate", "savestate"; libtpms tpm_nvfilename.h).
// Valid expressions: docs/concepts/state_store.md.
#pragma once

#include <xtpm/error.hpp>
#include <xtpm/wire/reader.hpp>

#include <concepts>
#include <optional>
#include <string_view>
#include <vector>

namespace xtpm {

// A state_store keeps named byte blobs. Models: memory_store, directory_store.
// Not checked by the compiler:
//  - load() answers std::nullopt only when the blob is absent; a blob that
//    exists but cannot be read (I/O error, wrong file type, symlink, too
//    large) is an error, never "absent": absent means "manufacture a new TPM";
//  - when save() returns success the new content is durable and replaced the
//    old one atomically: a crash leaves either the old or the new blob;
//    on failure the old content is untouched;
//  - remove() of an absent blob succeeds; when it returns the removal is durable;
//  - names satisfy valid_blob_name(); anything else is errc::bad_value;
//  - one store object is used by one thread at a time.
template <class S>
concept state_store = std::movable<S> && requires(S& s, std::string_view name, wire::bytes_view bytes) {
    { s.load(name) } -> std::same_as<result<std::optional<std::vector<std::byte>>>>;
    { s.save(name, bytes) } -> std::same_as<result<void>>;
    { s.remove(name) } -> std::same_as<result<void>>;
};

// The blob names libtpms passes to its NV callbacks (TPM_*_NAME).
inline constexpr std::string_view permanent_blob_name = "permall";
inline constexpr std::string_view volatile_blob_name = "volatilestate";
inline constexpr std::string_view save_state_blob_name = "savestate";

// Largest name a store accepts; far above libtpms's names, small enough for any
// file system together with the temp-file decoration.
inline constexpr std::size_t max_blob_name = 64;

// 1-64 characters of [A-Za-z0-9._-], not starting with '.': a plain file name
// that can never be ".", "..", a path, or collide with a store's hidden temp files.
constexpr auto valid_blob_name(std::string_view name) noexcept -> bool {
    if (name.empty() || name.size() > max_blob_name || name.front() == '.') return false;
    for (char const c : name) {
        bool const ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

}  // namespace xtpm
