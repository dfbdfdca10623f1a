# Finds the outside libraries behind xtpm::libtpms, xtpm::botan and xtpm::xen.
# Shared by the build tree and by the installed package (find_package(xtpm)).
macro(xtpm_find_deps)
    find_package(PkgConfig REQUIRED)
    find_package(Threads REQUIRED)
    pkg_check_modules(XTPM_LIBTPMS REQUIRED IMPORTED_TARGET GLOBAL libtpms)
    pkg_check_modules(XTPM_BOTAN REQUIRED IMPORTED_TARGET GLOBAL botan-2)
    pkg_check_modules(XTPM_XEN REQUIRED IMPORTED_TARGET GLOBAL xengnttab xenevtchn xenstore)
endmacro()
