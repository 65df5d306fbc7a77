// The spatialthinker native module: a thin N-API layer over the engine.
#include "addon/exports.h"

namespace st::addon {

std::vector<RegisterFn>& registrations() {
  static std::vector<RegisterFn> list;
  return list;
}

}  // namespace st::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  for (st::addon::RegisterFn fn : st::addon::registrations()) fn(env, exports);
  return exports;
}

NODE_API_MODULE(spatialthinker_native, InitModule)
