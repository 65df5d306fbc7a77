"""PyTorch eager beside bench/train.ts: the same GRPO update step on the CPU.

    python3 cpu_train_step.py DIR BATCH.json --threads N --steps K [--checkpoint-layers]

BATCH.json (written by bench/train.ts) holds the sequences' ids, the prompt
length, one image's patches and grid. The step is the engine's: the policy's
forward over every sequence (image through the vision tower), log-probs of
the completion tokens (logits of those positions only, logits_to_keep),
the GRPO loss as the engine computes it by default
(token-mean; ratio clipped to [0.8, 1.3], dual clip 3; k3 KL to fixed
reference log-probs, coefficient 0.01), backward, global grad-norm clipping
at 1, one fused AdamW step. Prints one JSON line: seconds per step (and
per phase: forward with the loss, backward, clip + AdamW + zero_grad) and
tokens/s.
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
    from transformers import Qwen2_5_VLForConditionalGeneration
except ImportError:
    fail("transformers (with Qwen2.5-VL) is not installed")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("batch")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--checkpoint-layers", action="store_true")
    # PyTorch's default (zero_grad(set_to_none=True)) allocates fresh gradient
    # tensors every step; --keep-grads zeroes them in place instead.
    parser.add_argument("--keep-grads", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with open(args.batch) as f:
        batch = json.load(f)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    if args.checkpoint_layers:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: PyTorch's fastest AdamW on the CPU (the default single-tensor
    # loop takes 7.8 s a step at 0.5B here, the fused kernel 0.36 s).
    optimizer = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.999), weight_decay=0.01, fused=True)

    ids = torch.tensor(batch["ids"], dtype=torch.long)
    sequences, length = ids.shape
    prompt_len = batch["prompt_length"]
    pixels = torch.tensor(batch["pixels"], dtype=torch.float32).reshape(-1, 1176).repeat(sequences, 1)
    grid = torch.tensor([batch["grid"]] * sequences, dtype=torch.long)
    completion = length - prompt_len
    advantages = torch.tensor([1.0 if i % 2 else -1.0 for i in range(sequences)])[:, None].expand(sequences, completion)
    old = torch.full((sequences, completion), -12.0)
    ref = torch.full((sequences, completion), -12.0)
    targets = ids[:, prompt_len:]

    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step():
        t0 = time.perf_counter()
        # Logits of the completion positions only (as TRL's GRPO asks with
        # logits_to_keep), not of the whole sequence.
        out = model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, use_cache=False, logits_to_keep=completion + 1)
        logits = out.logits[:, :-1].float()
        logp = torch.gather(logits.log_softmax(-1), 2, targets[..., None])[..., 0]
        ratio = torch.exp(logp - old)
        pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.3))
        pg = torch.where(advantages < 0, torch.minimum(pg, -advantages * 3.0), pg)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        loss = (pg + 0.01 * kl).mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=not args.keep_grads)
        t3 = time.perf_counter()
        phases["forward"] += t1 - t0
        phases["backward"] += t2 - t1
        phases["optimizer"] += t3 - t2

    step()  # warm-up: allocates the optimizer state
    for k in phases:
        phases[k] = 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = sequences * length
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "keep_grads": args.keep_grads,
        "step_seconds": seconds,
        "phase_seconds": {k: v / args.steps for k, v in phases.items()},
        "tokens_per_second": tokens / seconds,
    }))


if __name__ == "__main__":
    main()
