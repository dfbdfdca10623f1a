// tpmif v2, the shared-page protocol between a Xen vTPM frontend and its backend
// (xen/io/tpmif.h; xen-vtpm-protocol.md sections 2, 3 and 9): page layout, the
// backend and frontend channels, and the per-command waits. Sans-I/O. docs/tpmif.md.
#pragma once

#include <xtpm/proto/tpmif/backend.hpp>
#include <xtpm/proto/tpmif/duration.hpp>
#include <xtpm/proto/tpmif/frontend.hpp>
#include <xtpm/proto/tpmif/page.hpp>
