{
  "targets": [
    {
      "target_name": "spatialthinker_native",
      "sources": [
        "native/addon/addon.cpp",
        "native/addon/match_workers.cpp",
        "native/addon/runtime_info.cpp",
        "native/engine/thread_pool.cpp",
        "native/match/hungarian.cpp",
        "native/match/match_cpu.cpp",
        "native/backend/cuda/device_disabled.cpp",
        "native/match/match_cuda_disabled.cpp"
      ],
      "include_dirs": [
        "native",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
