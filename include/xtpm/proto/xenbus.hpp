// The vtpm device's xenbus handshake (xen-vtpm-protocol.md section 4 and the checklist
// of section 9): XenbusState, keys, strict value parsers, and the backend and frontend
// state machines, sans-I/O: they consume watch events and read values and emit
// xenstore, grant and event-channel actions. docs/tpmif.md.
#pragma once

#include <xtpm/proto/xenbus/backend.hpp>
#include <xtpm/proto/xenbus/common.hpp>
#include <xtpm/proto/xenbus/frontend.hpp>
