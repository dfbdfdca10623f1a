#include <xtpm/store/directory_store.hpp>
#include <xtpm/store/memory_store.hpp>

#include "archetypes/store_archetype.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {
using namespace xtpm;
namespace fs = std::filesystem;

// --- concept checks ------------------------------------------------------------
static_assert(state_store<archetypes::store>);
static_assert(state_store<memory_store>);
static_assert(state_store<directory_store>);

struct no_remove {
    auto load(std::string_view) -> result<std::optional<std::vector<std::byte>>>;
    auto save(std::string_view, wire::bytes_view) -> result<void>;
};
struct load_without_optional {
    auto load(std::string_view) -> result<std::vector<std::byte>>;  // cannot say "absent"
    auto save(std::string_view, wire::bytes_view) -> result<void>;
    auto remove(std::string_view) -> result<void>;
};
struct unmovable : archetypes::store {
    unmovable() = default;
    unmovable(unmovable&&) = delete;
};
static_assert(!state_store<no_remove>);
static_assert(!state_store<load_without_optional>);
static_assert(!state_store<unmovable>);

static_assert(valid_blob_name("permall"));
static_assert(valid_blob_name("tpm2-00.volatilestate"));
static_assert(!valid_blob_name(""));
static_assert(!valid_blob_name("."));
static_assert(!valid_blob_name(".."));
static_assert(!valid_blob_name(".permall.tmp-1-0"));
static_assert(!valid_blob_name("../permall"));
static_assert(!valid_blob_name("a/b"));
static_assert(!valid_blob_name(std::string_view{"a\0b", 3}));
static_assert(valid_blob_name(std::string_view{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}));
static_assert(!valid_blob_name(std::string_view{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}));

auto bytes(std::string_view s) -> std::vector<std::byte> {
    std::vector<std::byte> out;
    for (char c : s) out.push_back(static_cast<std::byte>(c));
    return out;
}

// A fresh directory under the system temp dir, removed with everything in it.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string t = (fs::temp_directory_path() / "xtpm-store-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::permissions(path, fs::perms::owner_all, ec);
        fs::remove_all(path, ec);
    }
    temp_dir(temp_dir const&) = delete;
    auto operator=(temp_dir const&) -> temp_dir& = delete;
};

void write_file(fs::path const& p, std::string_view content) {
    std::ofstream f{p, std::ios::binary};
    f << content;
}

auto read_file(fs::path const& p) -> std::string {
    std::ifstream f{p, std::ios::binary};
    return {std::istreambuf_iterator<char>{f}, {}};
}

auto open_store(fs::path const& p) -> directory_store {
    auto s = directory_store::open(p.string());
    REQUIRE(s.has_value());
    return std::move(*s);
}

auto temp_files(fs::path const& dir) -> int {
    int n = 0;
    for (auto const& e : fs::directory_iterator{dir})
        if (e.path().filename().string().starts_with(".")) ++n;
    return n;
}
}  // namespace

// --- memory_store ----------------------------------------------------------------

TEST_CASE("memory_store: saved blobs load back and absent ones are nullopt", "[store][memory]") {
    memory_store s;
    auto absent = s.load("permall");
    REQUIRE(absent.has_value());
    CHECK_FALSE(absent->has_value());
    REQUIRE(s.save("permall", bytes("one")).has_value());
    REQUIRE(s.save("permall", bytes("two")).has_value());
    CHECK(s.load("permall").value() == bytes("two"));
    REQUIRE(s.remove("permall").has_value());
    CHECK_FALSE(s.load("permall").value().has_value());
    CHECK(s.remove("permall").has_value());  // absent: still success
    CHECK(s.save_count() == 2);
}

TEST_CASE("memory_store: copies share the same blobs", "[store][memory]") {
    memory_store a;
    memory_store b = a;
    REQUIRE(a.save("savestate", bytes("x")).has_value());
    CHECK(b.peek("savestate") == bytes("x"));
    b.poke("volatilestate", bytes("y"));
    CHECK(a.load("volatilestate").value() == bytes("y"));
}

TEST_CASE("memory_store: injected faults fail the operation and keep the blobs", "[store][memory]") {
    memory_store s;
    s.poke("permall", bytes("old"));
    s.set_faults({.load = true, .save = true, .remove = true});
    CHECK(s.load("permall").error() == errc::io_error);
    CHECK(s.save("permall", bytes("new")).error() == errc::io_error);
    CHECK(s.remove("permall").error() == errc::io_error);
    s.set_faults({});
    CHECK(s.load("permall").value() == bytes("old"));
}

TEST_CASE("memory_store: invalid names are refused", "[store][memory]") {
    memory_store s;
    CHECK(s.save("../permall", bytes("x")).error() == errc::bad_value);
    CHECK(s.load("").error() == errc::bad_value);
    CHECK(s.remove("a/b").error() == errc::bad_value);
}

// --- directory_store -------------------------------------------------------------

TEST_CASE("directory_store: round trip, overwrite and remove", "[store][directory]") {
    temp_dir t;
    auto s = open_store(t.path);
    CHECK_FALSE(s.load("permall").value().has_value());
    REQUIRE(s.save("permall", bytes("first")).has_value());
    CHECK(s.load("permall").value() == bytes("first"));
    REQUIRE(s.save("permall", bytes("second, longer")).has_value());
    CHECK(s.load("permall").value() == bytes("second, longer"));
    CHECK(read_file(t.path / "permall") == "second, longer");
    auto const mode = fs::status(t.path / "permall").permissions() & fs::perms::all;
    CHECK(mode == (fs::perms::owner_read | fs::perms::owner_write));

    SECTION("an empty blob exists and is empty") {
        REQUIRE(s.save("savestate", {}).has_value());
        auto e = s.load("savestate");
        REQUIRE(e.has_value());
        REQUIRE(e->has_value());
        CHECK((*e)->empty());
    }
    SECTION("remove, twice") {
        REQUIRE(s.remove("permall").has_value());
        CHECK_FALSE(fs::exists(t.path / "permall"));
        CHECK(s.remove("permall").has_value());
        CHECK_FALSE(s.load("permall").value().has_value());
    }
    SECTION("invalid names") {
        CHECK(s.save("../escape", bytes("x")).error() == errc::bad_value);
        CHECK(s.load(".permall.tmp-1-1").error() == errc::bad_value);
        CHECK(s.remove("").error() == errc::bad_value);
        CHECK_FALSE(fs::exists(t.path.parent_path() / "escape"));
    }
    CHECK(temp_files(t.path) == 0);
}

TEST_CASE("directory_store: creates missing directories with mode 0700", "[store][directory]") {
    temp_dir t;
    auto const nested = t.path / "a" / "b";
    auto s = open_store(nested);
    CHECK((fs::status(nested).permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(t.path / "a").permissions() & fs::perms::all) == fs::perms::owner_all);
    REQUIRE(s.save("permall", bytes("x")).has_value());
    CHECK(s.path() == nested.string());

    SECTION("a path that is a file is refused") {
        write_file(t.path / "file", "x");
        CHECK_FALSE(directory_store::open((t.path / "file").string()).has_value());
    }
}

TEST_CASE("directory_store: a second store on the same directory is busy", "[store][directory]") {
    temp_dir t;
    {
        auto first = open_store(t.path);
        auto second = directory_store::open(t.path.string());
        REQUIRE_FALSE(second.has_value());
        CHECK(second.error() == errc::busy);
        auto moved = std::move(first);  // the lock moves with the store
        CHECK(directory_store::open(t.path.string()).error() == errc::busy);
    }
    CHECK(directory_store::open(t.path.string()).has_value());
}

TEST_CASE("directory_store: a planted symlink is never followed", "[store][directory]") {
    temp_dir t;
    auto s = open_store(t.path / "state");
    auto const victim = t.path / "victim";
    write_file(victim, "precious");
    fs::create_symlink(victim, t.path / "state" / "permall");

    auto loaded = s.load("permall");
    REQUIRE_FALSE(loaded.has_value());  // an error, not "absent"
    CHECK(loaded.error() == std::errc::too_many_symbolic_link_levels);

    auto saved = s.save("permall", bytes("overwritten"));
    CHECK_FALSE(saved.has_value());
    CHECK(read_file(victim) == "precious");
    CHECK(fs::is_symlink(t.path / "state" / "permall"));

    SECTION("a dangling symlink is refused too") {
        fs::create_symlink(t.path / "nowhere", t.path / "state" / "savestate");
        CHECK_FALSE(s.load("savestate").has_value());
        CHECK_FALSE(s.save("savestate", bytes("x")).has_value());
        CHECK_FALSE(fs::exists(t.path / "nowhere"));
    }
    CHECK(temp_files(t.path / "state") == 0);
}

TEST_CASE("directory_store: leftover temp files do not break load and are swept at open", "[store][directory]") {
    temp_dir t;
    {
        auto s = open_store(t.path);
        REQUIRE(s.save("permall", bytes("good")).has_value());
    }
    // What a crash between create and rename leaves behind.
    write_file(t.path / ".permall.tmp-4242-0", "half-written");
    write_file(t.path / ".volatilestate.tmp-1-7", "");
    {
        auto s = open_store(t.path);
        CHECK(s.load("permall").value() == bytes("good"));
        CHECK_FALSE(s.load("volatilestate").value().has_value());
        CHECK(temp_files(t.path) == 0);
        // A temp name planted after open is ignored as well.
        write_file(t.path / ".permall.tmp-4242-1", "junk");
        CHECK(s.load("permall").value() == bytes("good"));
        REQUIRE(s.save("permall", bytes("newer")).has_value());
        CHECK(s.load("permall").value() == bytes("newer"));
    }
}

TEST_CASE("directory_store: unreadable entries are errors, not absent", "[store][directory]") {
    temp_dir t;
    auto s = open_store(t.path);
    SECTION("a directory under the blob's name") {
        fs::create_directory(t.path / "permall");
        auto l = s.load("permall");
        REQUIRE_FALSE(l.has_value());
        CHECK(l.error() == std::errc::is_a_directory);
        auto w = s.save("permall", bytes("x"));
        CHECK_FALSE(w.has_value());
        CHECK(fs::is_directory(t.path / "permall"));
        CHECK_FALSE(s.remove("permall").has_value());
    }
    SECTION("a FIFO under the blob's name does not block") {
        REQUIRE(::mkfifo((t.path / "permall").c_str(), 0600) == 0);
        auto l = s.load("permall");
        REQUIRE_FALSE(l.has_value());
        CHECK(l.error() == errc::bad_state);
    }
    SECTION("a file above max_blob_size") {
        write_file(t.path / "permall", "");
        fs::resize_file(t.path / "permall", directory_store::max_blob_size + 1);  // sparse: costs no disk
        CHECK(s.load("permall").error() == errc::too_large);
        std::vector<std::byte> big(directory_store::max_blob_size + 1);
        CHECK(s.save("savestate", big).error() == errc::too_large);
    }
    CHECK(temp_files(t.path) == 0);
}

TEST_CASE("directory_store: a failed write leaves the old content intact", "[store][directory]") {
    temp_dir t;
    auto s = open_store(t.path);
    REQUIRE(s.save("permall", bytes("old content")).has_value());

    SECTION("the file size limit stops the write half-way") {
        // RLIMIT_FSIZE makes write() fail with EFBIG after 16 bytes; SIGXFSZ is
        // ignored so the process survives. Restored before any check runs.
        rlimit old{};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
        auto const old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old;
        lim.rlim_cur = 16;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
        auto const r = s.save("permall", std::vector<std::byte>(4096, std::byte{0x5A}));
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, old_handler);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == std::errc::file_too_large);
    }
    SECTION("the directory is read-only") {
        if (::geteuid() == 0) {
            WARN("skipped: root ignores directory permissions");
            return;
        }
        fs::permissions(t.path, fs::perms::owner_read | fs::perms::owner_exec);
        auto const r = s.save("permall", bytes("new content"));
        fs::permissions(t.path, fs::perms::owner_all);
        CHECK_FALSE(r.has_value());
    }
    CHECK(s.load("permall").value() == bytes("old content"));
    CHECK(temp_files(t.path) == 0);
}
