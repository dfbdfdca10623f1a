// The TIS FIFO protocol (TIS 1.3 section 5, PTP FIFO interface), sans-I/O:
// register map, timeouts, the time policy and the driver state machine. The
// driver reaches the chip only through an mmio_window and a tis_clock.
#pragma once

#include <xtpm/proto/tis/clock.hpp>
#include <xtpm/proto/tis/driver.hpp>
#include <xtpm/proto/tis/registers.hpp>
#include <xtpm/proto/tis/timeouts.hpp>
