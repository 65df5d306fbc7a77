#!/usr/bin/env python3
"""Times numpy's float32 matmul (its bundled BLAS, all cores) on y = x @ w.T.

usage: matmul_numpy.py M,K,N [M,K,N ...]
Prints one JSON object: {"blas": "...", "results": [{"m","k","n","seconds","gflops"}]}.
"""
import json
import sys
import time

try:
    import numpy as np
except ImportError:
    print(json.dumps({"error": "numpy not installed"}))
    sys.exit(0)


def blas_name():
    try:
        config = np.show_config(mode="dicts")
        return config["Build Dependencies"]["blas"]["name"]
    except Exception:
        return "unknown"


def main():
    results = []
    rng = np.random.default_rng(0)
    for spec in sys.argv[1:]:
        m, k, n = (int(v) for v in spec.split(","))
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        x @ w.T  # warm-up
        reps, start = 0, time.perf_counter()
        while True:
            x @ w.T
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed > 0.5 and reps >= 3:
                break
        seconds = elapsed / reps
        results.append({"m": m, "k": k, "n": n, "seconds": seconds, "gflops": 2 * m * k * n / seconds / 1e9})
    print(json.dumps({"blas": blas_name(), "results": results}))


if __name__ == "__main__":
    main()
