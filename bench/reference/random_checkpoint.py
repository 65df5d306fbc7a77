#!/usr/bin/env python3
"""Random weights of the real Qwen2.5-VL-3B-Instruct configuration, saved by transformers.

usage:
  random_checkpoint.py OUT --token-ids IDS.json [--dtype bf16|fp32] [--shards 2] [--seed 0] [--size 3b|tiny]

Builds Qwen2_5_VLForConditionalGeneration from the 3B config (text: hidden 2048,
36 layers, 16 heads, 2 kv heads, intermediate 11008, vocabulary 151936, tied
embeddings; vision: depth 32, hidden 1280, intermediate 3420, 16 heads, out
2048, window 112, full attention in blocks 7/15/23/31) with weights drawn from
the model's own initialiser under --seed, in --dtype, and writes it with
save_pretrained, max_shard_size set so that it lands in --shards files. The
special token ids (image pad, vision start/end, ...) come from IDS.json
({"endoftext", "imStart", "imEnd", "visionStart", "visionEnd", "visionPad",
"imagePad", "videoPad"}): the ids of the tokenizer that the caller writes
beside the weights (bench/scale.ts writes a small one; the embedding keeps
151936 rows). --size tiny writes a small model of the same structure, for a
quick check of the pipeline.

Prints one JSON object on the last line of stdout: parameters, bytes, files,
seconds; {"error": ...} when torch or transformers is missing.
"""
import argparse
import json
import os
import sys
import time


def fail(message):
    print(json.dumps({"error": message}))
    sys.exit(0)


try:
    import torch
except ImportError:
    fail("torch is not installed")
try:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
except ImportError:
    fail("transformers (with Qwen2.5-VL) is not installed")

SIZES = {
    # Qwen/Qwen2.5-VL-3B-Instruct config.json
    "3b": {
        "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                     rope_theta=1000000.0, rms_norm_eps=1e-6),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                       window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
        "tie": True,
    },
    "tiny": {
        "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096, rope_theta=10000.0,
                     rms_norm_eps=1e-6),
        "vision": dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                       window_size=112, fullatt_block_indexes=[1, 3]),
        "tie": True,
    },
}


def build_config(size, ids):
    spec = SIZES[size]
    vision = dict(spec["vision"], hidden_act="silu", in_chans=3, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, tokens_per_second=2)
    text = dict(spec["text"], hidden_act="silu", rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}
                if size == "3b" else {"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=spec["tie"],
                bos_token_id=ids["endoftext"], eos_token_id=ids["imEnd"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["imagePad"],
        video_token_id=ids["videoPad"],
        vision_start_token_id=ids["visionStart"],
        vision_end_token_id=ids["visionEnd"],
        tie_word_embeddings=spec["tie"],
    )
    # Older readers look for these at the top level too (the hub's config.json has both).
    for key, value in text.items():
        if key != "rope_scaling":
            setattr(config, key, value)
    config.vision_token_id = ids["visionPad"]
    return config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--token-ids", required=True)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="3b")
    args = parser.parse_args()
    with open(args.token_ids) as f:
        ids = json.load(f)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    start = time.time()
    torch.manual_seed(args.seed)
    config = build_config(args.size, ids)
    torch.set_default_dtype(dtype)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, torch_dtype=dtype)
    torch.set_default_dtype(torch.float32)
    model.eval()
    # The initialiser leaves norms at 1 and biases at 0; noise on them makes a
    # fidelity check see a wrong norm or bias indexing.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn(p.shape, dtype=torch.float32).mul_(0.1 if "norm" in name or "ln_q" in name else 0.02).to(p.dtype))
    parameters = sum(p.numel() for p in model.parameters())
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    # save_pretrained starts a new shard when the next tensor would pass the
    # limit; a bit over total/shards gives `shards` files.
    shard_bytes = total // max(1, args.shards) + (64 << 20)
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, max_shard_size=shard_bytes if args.shards > 1 else total * 2)
    files = sorted(f for f in os.listdir(args.out) if f.endswith(".safetensors"))
    print(json.dumps({
        "parameters": parameters,
        "bytes": sum(os.path.getsize(os.path.join(args.out, f)) for f in files),
        "files": files,
        "seconds": round(time.time() - start, 1),
    }))


if __name__ == "__main__":
    main()
