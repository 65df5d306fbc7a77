#!/usr/bin/env python3
"""The Python side of the GPU benchmarks (bench/gpu.ts), on the same random checkpoint.

usage:
  gpu_transformers.py generate DIR --prompts 64 --samples 8 --prompt-tokens 1024 --new-tokens 1024 [--image-side 28]
  gpu_transformers.py train DIR --sequences 16 --length 2048 [--steps 3]

generate: transformers' generate (bf16, sdpa attention, sampling at temperature 1,
exactly --new-tokens per sequence: min_new_tokens = max_new_tokens) on --prompts
image+text prompts of --prompt-tokens tokens, --samples per prompt.

train: a plain PyTorch GRPO update step on --sequences text sequences of --length
tokens (the second half is the completion): the policy's forward through the
model body, token log-probs over the vocabulary in chunks, the clipped
surrogate + k3 KL to a frozen reference model (bf16, forward under no_grad),
backward with gradient checkpointing, and a fused AdamW step on the bf16
weights. Time covers the reference forward, the policy forward and backward
and the optimizer step.

Prints one JSON object on the last line of stdout; {"error": ...} when torch,
transformers or a GPU is missing.
"""
import argparse
import json
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
    import transformers
    from transformers import Qwen2_5_VLForConditionalGeneration
except ImportError:
    fail("transformers (with Qwen2.5-VL) is not installed")
if not torch.cuda.is_available():
    fail("torch finds no CUDA device")


def load(directory):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        directory, torch_dtype=torch.bfloat16, attn_implementation="sdpa"
    )
    return model.to("cuda")


def image_prompt_batch(config, prompts, prompt_tokens, image_side):
    """Input ids with one image of image_side x image_side patches each, padded with text to prompt_tokens."""
    merge = config.vision_config.spatial_merge_size
    image_tokens = (image_side // merge) ** 2
    if image_tokens + 8 > prompt_tokens:
        raise SystemExit(f"--image-side {image_side} gives {image_tokens} image tokens, more than the prompt holds")
    vocab = config.vocab_size
    generator = torch.Generator().manual_seed(0)
    rows = []
    for p in range(prompts):
        text = torch.randint(0, vocab - 16, (prompt_tokens - image_tokens - 2,), generator=generator)
        ids = torch.cat(
            [
                torch.tensor([config.vision_start_token_id]),
                torch.full((image_tokens,), config.image_token_id),
                torch.tensor([config.vision_end_token_id]),
                text,
            ]
        )
        rows.append(ids)
    input_ids = torch.stack(rows).cuda()
    patch_dim = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size ** 2
    pixel_values = torch.randn(prompts * image_side * image_side, patch_dim, generator=generator).to("cuda", torch.bfloat16)
    grid = torch.tensor([[1, image_side, image_side]] * prompts, device="cuda")
    return input_ids, pixel_values, grid


def generate(args):
    model = load(args.dir)
    model.eval()
    input_ids, pixel_values, grid = image_prompt_batch(model.config, args.prompts, args.prompt_tokens, args.image_side)
    attention_mask = torch.ones_like(input_ids)

    def run(new_tokens):
        return model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=grid,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            num_return_sequences=args.samples,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
        )

    with torch.no_grad():
        run(2)  # warm-up: kernels, allocator
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = run(args.new_tokens)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    generated = (out.shape[1] - input_ids.shape[1]) * out.shape[0]
    print(
        json.dumps(
            {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "sequences": out.shape[0],
                "generated_tokens": generated,
                "seconds": seconds,
                "tokens_per_second": generated / seconds,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
        )
    )


def token_logprobs(hidden, head, targets, chunk=1024):
    """log softmax(hidden head^T)[targets], a chunk of rows at a time (no [tokens x vocab] fp32 tensor at once)."""
    out = []
    for start in range(0, hidden.shape[0], chunk):
        logits = (hidden[start : start + chunk] @ head.T).float()
        out.append(torch.gather(logits.log_softmax(-1), 1, targets[start : start + chunk, None])[:, 0])
    return torch.cat(out)


def completion_logprobs(model, input_ids, prompt_len):
    body = model.model(input_ids=input_ids, use_cache=False).last_hidden_state
    hidden = body[:, prompt_len - 1 : -1].reshape(-1, body.shape[-1])
    targets = input_ids[:, prompt_len:].reshape(-1)
    return token_logprobs(hidden, model.lm_head.weight, targets)


def train(args):
    policy = load(args.dir)
    reference = load(args.dir)
    reference.eval()
    reference.requires_grad_(False)
    policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.train()
    # Text-only sequences, as on our side. (transformers < 4.52 keeps the
    # vision tower on the outer model, later versions on .model.)
    visual = getattr(policy.model, "visual", None) or getattr(policy, "visual")
    visual.requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.99), weight_decay=0.01, fused=True)
    vocab = policy.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab - 16, (args.sequences, args.length), generator=generator).cuda()
    prompt_len = args.length // 2
    advantages = torch.tensor([1.0 if i % 2 else -1.0 for i in range(args.sequences)], device="cuda")
    advantages = advantages[:, None].expand(args.sequences, args.length - prompt_len).reshape(-1)
    old = torch.full((args.sequences * (args.length - prompt_len),), -12.0, device="cuda")

    def step():
        with torch.no_grad():
            ref = completion_logprobs(reference, input_ids, prompt_len)
        logp = completion_logprobs(policy, input_ids, prompt_len)
        ratio = torch.exp(logp - old)
        surrogate = -torch.minimum(ratio * advantages, ratio.clamp(0.8, 1.28) * advantages)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        loss = (surrogate + 1e-2 * kl).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (allocates the optimizer state)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = args.sequences * args.length
    text_params = sum(p.numel() for n, p in policy.named_parameters() if not n.startswith("model.visual") and "visual" not in n)
    print(
        json.dumps(
            {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "tokens_per_step": tokens,
                "step_seconds": seconds,
                "tokens_per_second": tokens / seconds,
                "text_parameters": text_params,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir")
    g.add_argument("--prompts", type=int, default=64)
    g.add_argument("--samples", type=int, default=8)
    g.add_argument("--prompt-tokens", type=int, default=1024)
    g.add_argument("--new-tokens", type=int, default=1024)
    g.add_argument("--image-side", type=int, default=28, help="image patches per side (28 -> 196 image tokens)")
    t = sub.add_parser("train")
    t.add_argument("dir")
    t.add_argument("--sequences", type=int, default=16)
    t.add_argument("--length", type=int, default=2048)
    t.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    generate(args) if args.command == "generate" else train(args)


if __name__ == "__main__":
    main()
