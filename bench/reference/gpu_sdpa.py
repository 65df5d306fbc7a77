#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention at the shapes of bench/gpu.ts's attention benchmark.

usage:
  gpu_sdpa.py --batch 4 --seq 2048 --heads 16 --kv-heads 2 --head-dim 128 [--causal] [--dtype bf16|fp32] [--repeat 10]

Times SDPA (whichever backend PyTorch picks: flash, memory-efficient or math)
on [batch, heads, seq, head_dim] inputs with grouped-query key/value heads,
with CUDA events after a warm-up. Prints one JSON object on the last line of
stdout; {"error": ...} when torch or a GPU is missing.
"""
import argparse
import json
import sys


def fail(message):
    print(json.dumps({"error": message}))
    sys.exit(0)


try:
    import torch
    import torch.nn.functional as F
except ImportError:
    fail("torch is not installed")
if not torch.cuda.is_available():
    fail("torch finds no CUDA device")

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, required=True)
parser.add_argument("--seq", type=int, required=True)
parser.add_argument("--heads", type=int, required=True)
parser.add_argument("--kv-heads", type=int, required=True)
parser.add_argument("--head-dim", type=int, required=True)
parser.add_argument("--causal", action="store_true")
parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
parser.add_argument("--repeat", type=int, default=10)
a = parser.parse_args()

dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
q = torch.randn(a.batch, a.heads, a.seq, a.head_dim, device="cuda", dtype=dtype)
k = torch.randn(a.batch, a.kv_heads, a.seq, a.head_dim, device="cuda", dtype=dtype)
v = torch.randn(a.batch, a.kv_heads, a.seq, a.head_dim, device="cuda", dtype=dtype)
group = a.heads // a.kv_heads


def call():
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=a.causal, enable_gqa=True)
    except TypeError:  # torch < 2.5: no enable_gqa
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), is_causal=a.causal
        )


call()
torch.cuda.synchronize()
times = []
for _ in range(a.repeat):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    torch.cuda.synchronize()
    times.append(start.elapsed_time(end) / 1000)
print(json.dumps({"seconds": sum(times) / len(times), "best_seconds": min(times), "dtype": a.dtype, "torch": torch.__version__}))
