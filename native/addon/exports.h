#pragma once
// Each addon source registers its functions on the module's exports with a
// static ModuleRegistration, so adding a source file is all it takes to add
// functions to the module.
#include <napi.h>

#include <functional>
#include <vector>

namespace st::addon {

using RegisterFn = void (*)(Napi::Env env, Napi::Object exports);

std::vector<RegisterFn>& registrations();

struct ModuleRegistration {
  explicit ModuleRegistration(RegisterFn fn) { registrations().push_back(fn); }
};

}  // namespace st::addon
