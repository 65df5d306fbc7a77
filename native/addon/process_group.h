#pragma once
// The communicator behind a ProcessGroup object (createProcessGroup), for
// native methods that take one, e.g. a model's attachProcessGroup(pg): the
// model then calls the collectives from C++ on its own buffers, and keeps the
// group alive as long as it holds the pointer.
#include <napi.h>

#include <memory>

#include "distributed/communicator.h"

namespace st::addon {

// Throws a TypeError naming `fn` when `value` is not a live ProcessGroup.
std::shared_ptr<dist::Communicator> communicator_of(const Napi::Value& value, const char* fn);

}  // namespace st::addon
