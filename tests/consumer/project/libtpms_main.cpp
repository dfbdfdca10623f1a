// Links against libtpms through the installed xtpm::libtpms target.
#include <libtpms/tpm_library.h>

int main() { return TPMLIB_GetVersion() != 0 ? 0 : 1; }
