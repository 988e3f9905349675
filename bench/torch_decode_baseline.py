#!/usr/bin/env python3
"""Decode-throughput baselines beside kvserve's (issue 8), on the GPU machine's PyTorch.

Llama-3-8B shapes with random bf16 weights, every sequence at the same context (1,024 tokens
by default, as bench/cuda_decode_bench's decode table), batch 1, 8, 32, 64 and 128:

* `hf-generate`: Hugging Face transformers' `generate` with its static cache, greedy, a fixed
  number of new tokens; the decode time per step is (t(prompt + N) - t(prompt + 1)) / (N - 1),
  so the prefill is taken out.
* `torch-compiled`: a Llama decode step written here in plain PyTorch (RMSNorm, fused QKV,
  RoPE, a static KV cache read once per step by batched GQA products, SwiGLU), compiled with
  torch.compile(mode="reduce-overhead") so its steps replay CUDA graphs; median of CUDA-event
  timings of single steps.

Prints a markdown table and writes JSON (--out). Needs a CUDA card with room for the weights
(16 GB) plus the KV of the largest batch.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

LLAMA3_8B = dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336,
                 vocab=128256, rope_theta=500000.0, eps=1e-5)


def weight_bytes(c):
    h, f, v = c["hidden"], c["ffn"], c["vocab"]
    q, kv = c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]
    per_layer = h * (q + 2 * kv) + h * q + 3 * h * f
    return 2 * (c["layers"] * per_layer + 2 * v * h)


class DecodeStep(torch.nn.Module):
    """One decode step for a batch of sequences that all sit at the same position."""

    def __init__(self, c, batch, max_len, device):
        super().__init__()
        self.c, self.batch, self.max_len = c, batch, max_len
        h, hd, nh, nkv = c["hidden"], c["head_dim"], c["heads"], c["kv_heads"]
        gen = torch.Generator(device=device).manual_seed(0)

        def rand(*shape):
            return torch.randn(*shape, device=device, dtype=torch.bfloat16, generator=gen) * 0.02

        self.embed = torch.nn.Parameter(rand(c["vocab"], h), requires_grad=False)
        self.lm_head = torch.nn.Parameter(rand(c["vocab"], h), requires_grad=False)
        self.final_norm = torch.nn.Parameter(torch.ones(h, device=device, dtype=torch.bfloat16),
                                             requires_grad=False)
        self.wqkv = torch.nn.ParameterList()
        self.wo = torch.nn.ParameterList()
        self.wgu = torch.nn.ParameterList()
        self.wdown = torch.nn.ParameterList()
        for _ in range(c["layers"]):
            self.wqkv.append(torch.nn.Parameter(rand((nh + 2 * nkv) * hd, h), requires_grad=False))
            self.wo.append(torch.nn.Parameter(rand(h, nh * hd), requires_grad=False))
            self.wgu.append(torch.nn.Parameter(rand(2 * c["ffn"], h), requires_grad=False))
            self.wdown.append(torch.nn.Parameter(rand(h, c["ffn"]), requires_grad=False))
        # One buffer per layer and K/V: an in-place write into a view of one big buffer made
        # the compiled graph copy the whole cache back every step.
        shape = (batch, nkv, max_len, hd)
        for layer in range(c["layers"]):
            self.register_buffer(f"k{layer}", torch.zeros(shape, device=device,
                                                          dtype=torch.bfloat16))
            self.register_buffer(f"v{layer}", torch.zeros(shape, device=device,
                                                          dtype=torch.bfloat16))
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, device=device).float() / hd))
        angles = torch.outer(torch.arange(max_len, device=device).float(), inv)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())
        self.register_buffer("slots", torch.arange(max_len, device=device))

    def rms_norm(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.c["eps"])).to(x.dtype)

    def rope(self, x, pos):
        half = x.shape[-1] // 2
        cos, sin = self.cos.index_select(0, pos.view(1)), self.sin.index_select(0, pos.view(1))
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)

    def forward(self, tokens, pos):
        c = self.c
        nh, nkv, hd = c["heads"], c["kv_heads"], c["head_dim"]
        b = tokens.shape[0]
        x = self.embed[tokens]
        mask = (self.slots <= pos).view(1, 1, 1, self.max_len)
        for layer in range(c["layers"]):
            qkv = self.rms_norm(x) @ self.wqkv[layer].t()
            q = qkv[:, : nh * hd].view(b, nh, 1, hd)
            k = qkv[:, nh * hd: (nh + nkv) * hd].view(b, nkv, 1, hd)
            v = qkv[:, (nh + nkv) * hd:].view(b, nkv, 1, hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k_cache, v_cache = getattr(self, f"k{layer}"), getattr(self, f"v{layer}")
            k_cache.index_copy_(2, pos.view(1), k)
            v_cache.index_copy_(2, pos.view(1), v)
            # GQA without repeating K/V: the query heads of one KV head form the rows of one
            # batched product, so each cached K and V element is read once per step.
            qg = q.view(b, nkv, nh // nkv, hd)
            scores = (qg @ k_cache.transpose(-1, -2)).float() * hd ** -0.5
            probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            att = probs.to(torch.bfloat16) @ v_cache
            x = x + att.reshape(b, nh * hd) @ self.wo[layer].t()
            gu = self.rms_norm(x) @ self.wgu[layer].t()
            gate, up = gu[:, : c["ffn"]], gu[:, c["ffn"]:]
            x = x + (F.silu(gate) * up) @ self.wdown[layer].t()
        logits = self.rms_norm(x) @ self.lm_head.t()
        return torch.argmax(logits, dim=-1)


def time_compiled(c, batch, ctx, steps, device):
    torch._dynamo.reset()  # a new model per batch size: start from a clean compile cache
    model = DecodeStep(c, batch, ctx + steps + 8, device)
    step = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    times = []
    with torch.inference_mode():
        tokens = torch.randint(0, c["vocab"], (batch,), device=device)
        for i in range(steps):
            pos = torch.tensor(ctx + i, device=device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            tokens = step(tokens, pos).clone()
            end.record()
            end.synchronize()
            if i >= 5:
                times.append(start.elapsed_time(end))
    del step, model
    torch.cuda.empty_cache()
    return statistics.median(times)


def make_hf_model(c, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=c["vocab"], hidden_size=c["hidden"],
                         intermediate_size=c["ffn"], num_hidden_layers=c["layers"],
                         num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                         head_dim=c["head_dim"], rope_theta=c["rope_theta"],
                         rms_norm_eps=c["eps"], max_position_embeddings=8192,
                         tie_word_embeddings=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def time_hf_generate(model, c, batch, ctx, new_tokens, device):
    ids = torch.randint(0, c["vocab"], (batch, ctx), device=device)
    mask = torch.ones_like(ids)

    def run(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, cache_implementation="static", pad_token_id=0)
        torch.cuda.synchronize()
        assert out.shape[1] == ctx + n, out.shape
        return time.perf_counter() - t0

    with torch.inference_mode():
        run(new_tokens)  # warm-up (and compilation, where generate compiles by itself)
        run(1)
        full = statistics.median(run(new_tokens) for _ in range(2))
        one = statistics.median(run(1) for _ in range(2))
    return (full - one) / (new_tokens - 1) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,8,32,64,128")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40, help="decode steps per measurement")
    p.add_argument("--copy-bandwidth", type=float, default=3.01e12,
                   help="measured copy bandwidth in bytes/s (read + write) for the floor")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--skip-compiled", action="store_true")
    p.add_argument("--out", default="")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_decode_baseline: no CUDA device")
    device = torch.device("cuda")
    c = LLAMA3_8B
    batches = [int(b) for b in args.batches.split(",")]
    kv_bytes_per_token = 2 * c["layers"] * c["kv_heads"] * c["head_dim"] * 2
    import transformers

    results = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "transformers": transformers.__version__, "context": args.context, "rows": []}

    def report(row):
        results["rows"].append(row)
        floor = (weight_bytes(c) + row["batch"] * args.context * kv_bytes_per_token) / \
            args.copy_bandwidth * 1e3
        row["floor_ms"] = floor
        print(f"| {row['impl']} | {row['batch']} | {row['ms_per_step']:.2f} | {floor:.2f} | "
              f"{100 * floor / row['ms_per_step']:.0f}% | "
              f"{row['batch'] / row['ms_per_step'] * 1e3:.0f} |", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)

    print(f"card {results['card']}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, context {args.context}")
    print("| implementation | batch | ms/step | floor ms | floor/time | tokens/s |")
    print("|---|---|---|---|---|---|")
    if not args.skip_compiled:
        for b in batches:
            report({"impl": "torch-compiled", "batch": b,
                    "ms_per_step": time_compiled(c, b, args.context, args.steps, device)})
    if not args.skip_hf:
        model = make_hf_model(c, device)
        for b in batches:
            ms = time_hf_generate(model, c, b, args.context, args.steps, device)
            if math.isfinite(ms) and ms > 0:
                report({"impl": "hf-generate-static", "batch": b, "ms_per_step": ms})


if __name__ == "__main__":
    main()
