#!/usr/bin/env python3
"""Builds random-weight LlamaForCausalLM models with transformers, saves them with
save_pretrained (safetensors), and writes reference logits for the CUDA backend's comparison
test (tests/cuda/hf_comparison_test.cpp, run with KVSERVE_HF_REF_DIR=<out>).

For each shape, <out>/<shape>/ holds the model folder plus
  tokens.i32        int32 [n]            a random prompt followed by teacher-forced tokens
  logits_fp32.f32   float32 [n, vocab]   transformers in fp32
  logits_bf16.f32   float32 [n, vocab]   transformers with bf16 weights and activations
  meta.txt          "prompt_len n vocab"
Run on the GPU machine (PyTorch + transformers, no network needed):
  python3 hf_reference.py <out> [--device cuda]
"""
import argparse
import json
import os
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

PROMPT_LEN = 20
DECODE_STEPS = 64

SHAPES = {
    # head dim 64, 3:1 GQA and tied embeddings, like the default model (SmolLM2)
    "gqa3_hd64_tied": dict(hidden_size=384, intermediate_size=1024, num_attention_heads=6,
                           num_key_value_heads=2, head_dim=64, tie_word_embeddings=True),
    # QKV bias, head dim 128, 2:1 GQA. LlamaForCausalLM's attention_bias also biases o_proj,
    # which no Llama-family checkpoint kvserve targets has; Qwen2 is the Llama decoder with
    # biases on Q, K and V only, so this shape is a Qwen2ForCausalLM.
    "qkv_bias_hd128": dict(arch="qwen2", hidden_size=512, intermediate_size=1536,
                           num_attention_heads=4, num_key_value_heads=2),
    # Llama-3 RoPE scaling, 4:1 GQA, head dim 128
    "llama3_rope_gqa4": dict(hidden_size=1024, intermediate_size=2816, num_attention_heads=8,
                             num_key_value_heads=2, head_dim=128, rope_theta=500000.0,
                             rope_scaling=dict(rope_type="llama3", factor=8.0,
                                               low_freq_factor=1.0, high_freq_factor=4.0,
                                               original_max_position_embeddings=16384)),
}


def tokenizer_writer():
    """kvserve's loader needs a tokenizer.json: reuse the byte-level BPE one of
    scripts/make_tiny_hf_model.py (copied beside this script by scripts/gpu_bundle)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (here, os.path.join(here, "..", "..", "scripts")):
        if os.path.exists(os.path.join(d, "make_tiny_hf_model.py")):
            sys.path.insert(0, d)
            import make_tiny_hf_model
            return make_tiny_hf_model
    raise SystemExit("make_tiny_hf_model.py not found")


def legacy_rope_fields(path):
    """transformers 5 writes `rope_parameters`; also write the `rope_theta` / `rope_scaling`
    keys that Llama 3.x checkpoints carry (and kvserve's config reader takes)."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.get("rope_parameters")
    if rp:
        cfg["rope_theta"] = rp.get("rope_theta", 10000.0)
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    tiny = tokenizer_writer()
    for name, shape in SHAPES.items():
        shape = dict(shape)
        qwen2 = shape.pop("arch", "llama") == "qwen2"
        config_class, model_class = ((Qwen2Config, Qwen2ForCausalLM) if qwen2
                                     else (LlamaConfig, LlamaForCausalLM))
        cfg = config_class(vocab_size=len(tiny.vocab()), num_hidden_layers=3,
                           max_position_embeddings=16384, rms_norm_eps=1e-5,
                           initializer_range=0.05, **shape)
        model = model_class(cfg).eval()
        folder = os.path.join(args.out, name)
        model.save_pretrained(folder, safe_serialization=True)
        tiny.write_tokenizer(folder)
        legacy_rope_fields(os.path.join(folder, "config.json"))
        n = PROMPT_LEN + DECODE_STEPS
        tokens = torch.randint(0, cfg.vocab_size, (1, n))
        with torch.no_grad():
            m32 = model.to(args.device, torch.float32)
            l32 = m32(tokens.to(args.device)).logits[0].float().cpu()
            m16 = model.to(args.device, torch.bfloat16)
            l16 = m16(tokens.to(args.device)).logits[0].float().cpu()
        tokens[0].to(torch.int32).numpy().tofile(os.path.join(folder, "tokens.i32"))
        l32.numpy().astype("float32").tofile(os.path.join(folder, "logits_fp32.f32"))
        l16.numpy().astype("float32").tofile(os.path.join(folder, "logits_bf16.f32"))
        with open(os.path.join(folder, "meta.txt"), "w") as f:
            f.write(f"{PROMPT_LEN} {n} {cfg.vocab_size}\n")
        d = (l16 - l32).norm() / l32.norm()
        print(f"{name}: transformers bf16 vs fp32 relative L2 distance {d:.3e}")


if __name__ == "__main__":
    main()
