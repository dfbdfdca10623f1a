// memory_store: a state_store in memory, for tests and for callers that keep
// state elsewhere. Copies are handles to the same blobs, so a test can keep one
// copy and look at what a device stored. Faults can be injected per operation
// to walk the error paths of whatever uses the store.
#pragma once

#include <xtpm/store/concepts.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace xtpm {

class memory_store {
public:
    // Which operations fail (with errc::io_error) until cleared.
    struct faults {
        bool load = false;
        bool save = false;
        bool remove = false;
    };

    memory_store() : s_{std::make_shared<shared>()} {}

    auto load(std::string_view name) -> result<std::optional<std::vector<std::byte>>> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        std::lock_guard lock{s_->mu};
        if (s_->active.load) return fail(errc::io_error);
        auto it = s_->blobs.find(name);
        if (it == s_->blobs.end()) return std::nullopt;
        return it->second;
    }

    auto save(std::string_view name, wire::bytes_view bytes) -> result<void> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        std::lock_guard lock{s_->mu};
        if (s_->active.save) return fail(errc::io_error);
        s_->blobs.insert_or_assign(std::string{name}, std::vector<std::byte>(bytes.begin(), bytes.end()));
        ++s_->saves;
        return {};
    }

    auto remove(std::string_view name) -> result<void> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        std::lock_guard lock{s_->mu};
        if (s_->active.remove) return fail(errc::io_error);
        if (auto it = s_->blobs.find(name); it != s_->blobs.end()) s_->blobs.erase(it);
        return {};
    }

    // Test hooks: bypass the faults.
    void set_faults(faults f) {
        std::lock_guard lock{s_->mu};
        s_->active = f;
    }
    [[nodiscard]] auto peek(std::string_view name) const -> std::optional<std::vector<std::byte>> {
        std::lock_guard lock{s_->mu};
        auto it = s_->blobs.find(name);
        if (it == s_->blobs.end()) return std::nullopt;
        return it->second;
    }
    void poke(std::string_view name, wire::bytes_view bytes) {
        std::lock_guard lock{s_->mu};
        s_->blobs.insert_or_assign(std::string{name}, std::vector<std::byte>(bytes.begin(), bytes.end()));
    }
    [[nodiscard]] auto contains(std::string_view name) const -> bool { return peek(name).has_value(); }
    // Successful save() calls so far.
    [[nodiscard]] auto save_count() const -> std::size_t {
        std::lock_guard lock{s_->mu};
        return s_->saves;
    }

private:
    struct shared {
        mutable std::mutex mu;
        std::map<std::string, std::vector<std::byte>, std::less<>> blobs;
        faults active;
        std::size_t saves = 0;
    };
    std::shared_ptr<shared> s_;
};

}  // namespace xtpm
