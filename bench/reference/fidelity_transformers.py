#!/usr/bin/env python3
"""transformers' log-probs of one image+text completion, for realSizeFidelity in bench/scale-checkpoint.ts.

usage: fidelity_transformers.py DIR WORK

WORK holds input.json ({"ids": prompt ids with the image pad tokens, "completion": ids,
"grid": [[t, h, w]], "pixelShape": [n]}) and pixels.f32 (the patch rows our image
processor made, little-endian fp32, [patches, 3*2*14*14]). Loads DIR in fp32 with eager
attention, runs one forward over prompt + completion and writes log p(completion_j |
prefix) to WORK/logprobs.json. Prints {"tokens": n} on the last line; {"error": ...}
when torch or transformers is missing.
"""
import json
import os
import sys


def fail(message):
    print(json.dumps({"error": message}))
    sys.exit(0)


try:
    import numpy as np
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
except ImportError as e:
    fail(f"torch/transformers/numpy are not installed: {e}")


def main():
    directory, work = sys.argv[1], sys.argv[2]
    with open(os.path.join(work, "input.json")) as f:
        spec = json.load(f)
    pixels = np.fromfile(os.path.join(work, "pixels.f32"), dtype="<f4")
    torch.set_grad_enabled(False)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        directory, torch_dtype=torch.float32, attn_implementation="eager"
    ).eval()
    patch_dim = model.config.vision_config.in_chans * model.config.vision_config.temporal_patch_size * \
        model.config.vision_config.patch_size ** 2
    prompt, completion = spec["ids"], spec["completion"]
    ids = torch.tensor([prompt + completion], dtype=torch.long)
    # transformers 5 computes the image tokens' 3-D M-RoPE positions only when
    # told which tokens are image tokens; without it every token gets 1-D
    # text positions (the processor normally passes this).
    token_types = (ids == model.config.image_token_id).to(torch.int32)
    out = model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        mm_token_type_ids=token_types,
        pixel_values=torch.from_numpy(pixels.reshape(-1, patch_dim)),
        image_grid_thw=torch.tensor(spec["grid"], dtype=torch.long),
    )
    logits = out.logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt) - 1
    result = [float(logp[start + j, token]) for j, token in enumerate(completion)]
    with open(os.path.join(work, "logprobs.json"), "w") as f:
        json.dump(result, f)
    print(json.dumps({"tokens": len(result)}))


if __name__ == "__main__":
    main()
