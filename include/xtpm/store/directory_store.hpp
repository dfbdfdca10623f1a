// directory_store: a state_store with one file per blob in a private directory.
// Writes are atomic and durable (POSIX rename(2): temp file in the same directory,
// fsync, rename over the target, fsync the directory). Every open uses O_NOFOLLOW
// and blobs must be regular files, so a symlink planted in the directory is never
// followed (CVE-2020-28407, swtpm writing through a symlink) and never read.
#pragma once

#include <xtpm/io/fd.hpp>
#include <xtpm/store/concepts.hpp>

#include <cerrno>
#include <cstdio>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace xtpm {

class directory_store {
public:
    // The largest blob read or written. libtpms's largest blob is the TPM 2.0
    // permanent state: NV_MEMORY_SIZE (128 KiB in libtpms 0.9) plus headers;
    // 1 MiB leaves room for a sealing layer and for later libtpms versions.
    static constexpr std::size_t max_blob_size = std::size_t{1} << 20;

    // Opens `path`, creating it (and missing parents) with mode 0700, and takes an
    // exclusive flock on it: a second store on the same directory, in this or any
    // process, gets errc::busy, because two writers would corrupt each other's state.
    // Temp files left by a crash during save() are removed.
    static auto open(std::string path) -> result<directory_store> {
        if (path.empty()) return fail(errc::bad_value);
        if (auto made = make_dirs(path); !made) return std::unexpected{made.error()};
        io::unique_fd dir{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
        if (!dir) return io::sys_error();
        if (::flock(dir.get(), LOCK_EX | LOCK_NB) != 0)
            return errno == EWOULDBLOCK ? fail(errc::busy) : io::sys_error();
        directory_store s{std::move(dir), std::move(path)};
        if (auto swept = s.remove_stale_temps(); !swept) return std::unexpected{swept.error()};
        return s;
    }

    auto load(std::string_view name) -> result<std::optional<std::vector<std::byte>>> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        std::string const file{name};
        // O_NONBLOCK: a FIFO planted under the name must not block the open.
        io::unique_fd fd{::openat(dir_.get(), file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)};
        if (!fd) {
            if (errno == ENOENT) return std::nullopt;
            return io::sys_error();  // ELOOP for a symlink: refused, not "absent"
        }
        struct stat st{};
        if (::fstat(fd.get(), &st) != 0) return io::sys_error();
        if (auto bad = check_regular(st.st_mode); !bad) return std::unexpected{bad.error()};
        if (static_cast<std::uint64_t>(st.st_size) > max_blob_size) return fail(errc::too_large);

        std::vector<std::byte> out(static_cast<std::size_t>(st.st_size));
        std::size_t got = 0;
        for (;;) {
            // One spare byte detects a file that grew past max_blob_size since fstat.
            if (got == out.size()) {
                if (out.size() > max_blob_size) return fail(errc::too_large);
                out.resize(out.size() + 1);
            }
            auto const n = ::read(fd.get(), out.data() + got, out.size() - got);
            if (n < 0) {
                if (errno == EINTR) continue;
                return io::sys_error();
            }
            if (n == 0) break;
            got += static_cast<std::size_t>(n);
        }
        out.resize(got);
        return out;
    }

    auto save(std::string_view name, wire::bytes_view bytes) -> result<void> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        if (bytes.size() > max_blob_size) return fail(errc::too_large);
        std::string const file{name};
        // rename() would replace a planted symlink rather than follow it, but an
        // entry we did not create means someone else writes here: refuse.
        struct stat st{};
        if (::fstatat(dir_.get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (auto bad = check_regular(st.st_mode); !bad) return std::unexpected{bad.error()};
        } else if (errno != ENOENT) {
            return io::sys_error();
        }

        std::string tmp;
        io::unique_fd fd;
        for (int attempt = 0; attempt < 16 && !fd; ++attempt) {
            tmp = temp_name(file);
            fd.reset(::openat(dir_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
            if (!fd && errno != EEXIST) return io::sys_error();
        }
        if (!fd) return fail(errc::busy);  // 16 live temp names: someone else writes here

        auto written = [&]() -> result<void> {
            if (auto w = io::write_all(fd.get(), bytes); !w) return w;
            if (::fsync(fd.get()) != 0) return io::sys_error();
            if (::close(fd.release()) != 0) return io::sys_error();  // NFS reports write errors here
            if (::renameat(dir_.get(), tmp.c_str(), dir_.get(), file.c_str()) != 0) return io::sys_error();
            return {};
        }();
        if (!written) {
            ::unlinkat(dir_.get(), tmp.c_str(), 0);  // the old blob was never touched
            return written;
        }
        return sync_dir();
    }

    auto remove(std::string_view name) -> result<void> {
        if (!valid_blob_name(name)) return fail(errc::bad_value);
        std::string const file{name};
        if (::unlinkat(dir_.get(), file.c_str(), 0) != 0) {
            if (errno == ENOENT) return {};
            return io::sys_error();
        }
        return sync_dir();
    }

    [[nodiscard]] auto path() const noexcept -> std::string const& { return path_; }

private:
    directory_store(io::unique_fd dir, std::string path) noexcept : dir_{std::move(dir)}, path_{std::move(path)} {}

    static auto sys_error(int e) -> std::unexpected<std::error_code> {
        return std::unexpected{std::error_code{e, std::system_category()}};
    }

    static auto check_regular(mode_t mode) -> result<void> {
        if (S_ISREG(mode)) return {};
        if (S_ISLNK(mode)) return sys_error(ELOOP);
        if (S_ISDIR(mode)) return sys_error(EISDIR);
        return fail(errc::bad_state);  // FIFO, socket, device: never a blob
    }

    // mkdir -p with mode 0700 for every directory it creates; each new directory
    // is made durable by syncing its parent.
    static auto make_dirs(std::string const& path) -> result<void> {
        if (::mkdir(path.c_str(), 0700) == 0) return sync_parent(path);
        if (errno == EEXIST) return {};
        if (errno != ENOENT) return io::sys_error();
        auto const parent = parent_of(path);
        if (parent.empty() || parent == path) return sys_error(ENOENT);
        if (auto p = make_dirs(parent); !p) return p;
        if (::mkdir(path.c_str(), 0700) == 0) return sync_parent(path);
        return errno == EEXIST ? result<void>{} : io::sys_error();
    }

    static auto parent_of(std::string path) -> std::string {
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        auto const slash = path.find_last_of('/');
        if (slash == std::string::npos) return ".";
        if (slash == 0) return "/";
        return path.substr(0, slash);
    }

    static auto sync_parent(std::string const& path) -> result<void> {
        io::unique_fd p{::open(parent_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
        if (!p || ::fsync(p.get()) != 0) return io::sys_error();
        return {};
    }

    auto sync_dir() -> result<void> {
        if (::fsync(dir_.get()) != 0) return io::sys_error();
        return {};
    }

    // ".<name>.tmp-<pid>-<seq>": hidden, and never a valid blob name.
    auto temp_name(std::string const& file) -> std::string {
        char suffix[48];
        std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%llu", static_cast<long>(::getpid()),
                      static_cast<unsigned long long>(seq_++));
        return "." + file + suffix;
    }

    static auto is_temp_name(std::string_view n) noexcept -> bool {
        return n.size() > 1 && n.front() == '.' && n.find(".tmp-") != std::string_view::npos;
    }

    auto remove_stale_temps() -> result<void> {
        int const fd = ::dup(dir_.get());  // fdopendir takes the fd; the flock stays on dir_
        if (fd < 0) return io::sys_error();
        DIR* d = ::fdopendir(fd);
        if (d == nullptr) {
            ::close(fd);
            return io::sys_error();
        }
        bool removed = false;
        result<void> r;
        while (auto* e = ::readdir(d)) {
            if (!is_temp_name(e->d_name)) continue;
            if (::unlinkat(dir_.get(), e->d_name, 0) == 0) removed = true;
            else if (errno != ENOENT) { r = io::sys_error(); break; }
        }
        ::closedir(d);
        if (r && removed) r = sync_dir();
        return r;
    }

    io::unique_fd dir_;
    std::string path_;
    std::uint64_t seq_ = 0;
};

}  // namespace xtpm
