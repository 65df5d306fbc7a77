#pragma once
// Each addon source registers its functions on the module's exports.
#include <napi.h>

namespace st::addon {

void register_match(Napi::Env env, Napi::Object exports);
void register_runtime_info(Napi::Env env, Napi::Object exports);

}  // namespace st::addon
