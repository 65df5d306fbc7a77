// The spatialthinker native module: a thin N-API layer over the engine.
#include "addon/exports.h"

namespace st::addon {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  register_runtime_info(env, exports);
  register_match(env, exports);
  return exports;
}

}  // namespace st::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return st::addon::Init(env, exports); }

NODE_API_MODULE(spatialthinker_native, InitModule)
