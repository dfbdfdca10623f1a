// devmem_mmio: the TIS register region (5 localities x 4 KiB, TIS 1.3 section
// 5, at 0xFED40000 on a PC), or some of its locality windows, mapped from
// /dev/mem or any file that maps physical memory the same way (a Xen driver
// domain given iomem access maps it through its /dev/mem too). Compiled everywhere; it works only where the
// kernel lets this process map that range (root, CONFIG_STRICT_DEVMEM allows
// MMIO outside System RAM). See docs/tis.md.
#pragma once

#include <xtpm/config.hpp>
#include <xtpm/io/fd.hpp>
#include <xtpm/proto/tis/registers.hpp>

#include <bit>
#include <cstdint>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace xtpm {

class devmem_mmio {
public:
    // Maps the windows of localities [first, first + count) of the region at
    // `base` in `path` (all five by default; one, when a Xen domain was given
    // only its own locality's page). base must be page aligned (the TIS base
    // is); /dev/mem opened O_SYNC maps MMIO uncached.
    static auto open(std::uint64_t base = proto::tis::default_base, std::string const& path = "/dev/mem",
                     std::uint8_t first = 0, std::uint8_t count = proto::tis::localities) -> result<devmem_mmio> {
        auto const page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        if (base % page != 0 || count == 0 || first >= proto::tis::localities ||
            count > proto::tis::localities - first)
            return fail(errc::bad_value);
        io::unique_fd fd{::open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC)};
        if (!fd) return io::sys_error();
        auto const size = std::size_t{count} * proto::tis::window_size;
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                         static_cast<off_t>(base + proto::tis::address(first, 0)));
        if (p == MAP_FAILED) return io::sys_error();
        // The fd may close now: the mapping stays.
        return devmem_mmio{static_cast<std::uint8_t volatile*>(p), first, count};
    }

    devmem_mmio(devmem_mmio&& o) noexcept
        : base_{std::exchange(o.base_, nullptr)}, first_{o.first_}, count_{o.count_} {}
    auto operator=(devmem_mmio&& o) noexcept -> devmem_mmio& {
        if (this != &o) {
            unmap();
            base_ = std::exchange(o.base_, nullptr);
            first_ = o.first_;
            count_ = o.count_;
        }
        return *this;
    }
    devmem_mmio(devmem_mmio const&) = delete;
    auto operator=(devmem_mmio const&) -> devmem_mmio& = delete;
    ~devmem_mmio() { unmap(); }

    // --- mmio_window: one volatile access of the given width per call ----------
    auto read8(std::uint8_t locality, std::uint16_t offset) -> std::uint8_t {
        return *at<std::uint8_t>(locality, offset);
    }
    auto read32(std::uint8_t locality, std::uint16_t offset) -> std::uint32_t {
        return le(*at<std::uint32_t>(locality, offset));
    }
    void write8(std::uint8_t locality, std::uint16_t offset, std::uint8_t v) {
        *at<std::uint8_t>(locality, offset) = v;
    }
    void write32(std::uint8_t locality, std::uint16_t offset, std::uint32_t v) {
        *at<std::uint32_t>(locality, offset) = le(v);
    }

private:
    devmem_mmio(std::uint8_t volatile* base, std::uint8_t first, std::uint8_t count) noexcept
        : base_{base}, first_{first}, count_{count} {}

    // MMIO registers are device memory, not wire bytes: a volatile access of the
    // register's own width at its own address is how the bus cycle is issued.
    // The registers are little-endian (PC memory space); le() is a no-op on x86.
    template <class T>
    auto at(std::uint8_t locality, std::uint16_t offset) -> T volatile* {
        XTPM_ASSERT(base_ != nullptr && locality >= first_ && locality - first_ < count_);  // a mapped window
        XTPM_ASSERT(offset % sizeof(T) == 0 && offset + sizeof(T) <= proto::tis::window_size);
        auto const window = static_cast<std::uint8_t>(locality - first_);
        return reinterpret_cast<T volatile*>(base_ + proto::tis::address(window, offset));
    }
    static constexpr auto le(std::uint32_t v) noexcept -> std::uint32_t {
        if constexpr (std::endian::native == std::endian::big) return std::byteswap(v);
        else return v;
    }
    void unmap() noexcept {
        if (base_ != nullptr) ::munmap(const_cast<std::uint8_t*>(base_), std::size_t{count_} * proto::tis::window_size);
        base_ = nullptr;
    }

    std::uint8_t volatile* base_ = nullptr;
    std::uint8_t first_ = 0;  // the windows mapped: localities [first_, first_ + count_)
    std::uint8_t count_ = 0;
};

}  // namespace xtpm
