#pragma once

// x86-64: one clone of the function per instruction set, picked at load
// time from the CPU, so the compiler's vectorisation uses AVX-512 or AVX2
// where they exist and one binary serves every x86-64. Elsewhere (arm64)
// the compiler's baseline vectorisation (NEON) serves.
#if defined(__x86_64__) || defined(_M_X64)
#define ST_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ST_VECTOR_CLONES
#endif
