// Umbrella header for xtpm's dependency-free core: errors, wire, pipeline.
// It never pulls in a policy that needs an outside library.
#pragma once

#include <xtpm/config.hpp>
#include <xtpm/error.hpp>
#include <xtpm/pipeline.hpp>
#include <xtpm/wire/codec.hpp>
#include <xtpm/wire/error_response.hpp>
#include <xtpm/wire/header.hpp>
#include <xtpm/wire/reader.hpp>
#include <xtpm/wire/types.hpp>
#include <xtpm/wire/writer.hpp>
