#!/usr/bin/env python3
"""Time scipy.optimize.linear_sum_assignment on a file of square cost matrices.

CLI:
    python3 lsa_scipy.py MATRICES.bin --n N --count K [--min-seconds S]

MATRICES.bin holds K row-major N x N float64 matrices (little-endian), back to
back. Every matrix is solved (minimum total cost); the timed loop covers only
the solves and repeats the whole set until at least --min-seconds (0.5 s) has
elapsed. Prints one JSON object:

    {"n": N, "count": K, "seconds_per_problem": T,
     "total_costs": [first up to 8 optimal totals],
     "assignments_sha": sha256 hex of the concatenated little-endian int32
                        col_ind arrays of all K problems,
     "repetitions": R}

If scipy (or numpy) is missing it prints {"error": "scipy not installed"} and
exits 0.
"""

import argparse
import hashlib
import json
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("matrices", help="binary file of K row-major N x N float64 matrices")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    args = ap.parse_args(argv)

    try:
        import numpy as np
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        print(json.dumps({"error": "scipy not installed"}))
        return 0

    n, k = args.n, args.count
    if n < 0 or k < 1:
        print(json.dumps({"error": "need n >= 0 and count >= 1"}))
        return 1
    expected = n * n * k * 8
    size = os.path.getsize(args.matrices)
    if size != expected:
        print(json.dumps({"error": "file has %d bytes, expected %d (K*N*N*8)" % (size, expected)}))
        return 1

    data = np.fromfile(args.matrices, dtype="<f8").astype(np.float64, copy=False)
    mats = [np.ascontiguousarray(m) for m in data.reshape(k, n, n)]

    # First pass: results (also warms up scipy).
    col_parts = []
    totals = []
    for m in mats:
        rows, cols = linear_sum_assignment(m)
        col_parts.append(np.asarray(cols, dtype="<i4").tobytes())
        if len(totals) < 8:
            totals.append(float(m[rows, cols].sum()))
    sha = hashlib.sha256(b"".join(col_parts)).hexdigest()

    # Timed passes: solves only.
    elapsed = 0.0
    reps = 0
    while elapsed < args.min_seconds or reps == 0:
        for m in mats:
            t0 = time.perf_counter()
            linear_sum_assignment(m)
            elapsed += time.perf_counter() - t0
        reps += 1

    print(json.dumps({
        "n": n,
        "count": k,
        "seconds_per_problem": elapsed / (reps * k),
        "total_costs": totals,
        "assignments_sha": sha,
        "repetitions": reps,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
