#!/usr/bin/env python3
"""Writes a Hugging Face model folder with Llama-3-8B's shapes and no weights, for serving
benchmarks with `--load-format dummy` (the CUDA backend draws random bf16 weights on the device):

    config.json            the published Llama-3-8B architecture numbers (hidden 4096, 32 layers,
                           32 query / 8 KV heads, head dim 128, FFN 14336, vocab 128256,
                           8192 positions, rope theta 500000)
    tokenizer.json         a synthetic byte-level BPE with exactly 128,256 ids, split like Llama 3:
                           the 256 byte tokens, every two-byte pair, then three-byte tokens up to
                           id 127,999, and Llama 3's 256 special tokens at 128,000..128,255 (same
                           ids and names), so that every id a random-weight model samples decodes
    tokenizer_config.json  BOS <|begin_of_text|>, EOS <|eot_id|>, a Llama-3-style chat template

It is not Llama 3's vocabulary (its merges are not these); benchmarks send token ids with
ignore_eos, so only the ids' range matters. Pure Python; about a second.

    python3 bench/experiments/make_llama3_8b_folder.py [--out models/llama-3-8b-dummy]
"""
import argparse
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

VOCAB_SIZE = 128256
NUM_REGULAR = 128000  # ids below this are ordinary BPE tokens; the rest are special

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
    "torch_dtype": "bfloat16",
}

# Llama 3's pre-tokenizer pattern (letters, 1-3 digit numbers, punctuation, newlines, spaces).
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim }}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")


def byte_chars():
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are mapped
    in order onto code points from 256 up."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def special_tokens():
    """Llama 3's special tokens by id (128000 + i)."""
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>",
             7: "<|end_header_id|>", 9: "<|eot_id|>"}
    out, reserved = [], 0
    for i in range(VOCAB_SIZE - NUM_REGULAR):
        if i in named:
            out.append(named[i])
        else:
            out.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return out


def tokenizer_json():
    chars = byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    merges = []
    # Every pair of bytes (65,536 tokens), then pairs extended by one byte until id 127,999.
    for a in chars:
        for b in chars:
            vocab[a + b] = len(vocab)
            merges.append(f"{a} {b}")
    done = False
    for a in chars:
        for b in chars:
            for c in chars:
                if len(vocab) == NUM_REGULAR:
                    done = True
                    break
                vocab[a + b + c] = len(vocab)
                merges.append(f"{a + b} {c}")
            if done:
                break
        if done:
            break
    assert len(vocab) == NUM_REGULAR
    added = [{"id": NUM_REGULAR + i, "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, t in enumerate(special_tokens())]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "models" / "llama-3-8b-dummy"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=1) + "\n")
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json(), ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": True,
        "chat_template": CHAT_TEMPLATE}, indent=1) + "\n")
    print(os.fspath(out))


if __name__ == "__main__":
    main()
