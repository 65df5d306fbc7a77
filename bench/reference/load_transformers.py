#!/usr/bin/env python3
"""transformers' load of a model directory in fp32, for the load-time comparison of bench/scale-checkpoint.ts.

usage: load_transformers.py DIR

Times Qwen2_5_VLForConditionalGeneration.from_pretrained(DIR, torch_dtype=torch.float32)
(the CPU engine also keeps fp32 weights) and prints one JSON object on the last line:
seconds, peakRssBytes (getrusage maxrss of this process), parameters; {"error": ...}
when torch or transformers is missing.
"""
import json
import resource
import sys
import time


def fail(message):
    print(json.dumps({"error": message}))
    sys.exit(0)


try:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
except ImportError as e:
    fail(f"torch/transformers are not installed: {e}")


def main():
    directory = sys.argv[1]
    start = time.time()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, torch_dtype=torch.float32)
    seconds = time.time() - start
    parameters = sum(p.numel() for p in model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peakRssBytes": peak, "parameters": parameters}))


if __name__ == "__main__":
    main()
