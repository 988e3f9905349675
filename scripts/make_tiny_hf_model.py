#!/usr/bin/env python3
"""Writes a tiny random-weight Hugging Face model folder (Qwen2 architecture: q/k/v biases,
untied embeddings, 3:1 GQA, Llama 3 rope scaling) with a byte-level BPE tokenizer.json that
splits like Llama 3, for kvserve's HF-folder tests.

The weights come from Python's seeded Mersenne Twister (one stream per tensor), whose sequence
Python keeps stable across versions, so the folder is the same on every machine, and the script
needs nothing but Python: tests run it at test time.

    make_tiny_hf_model.py --out DIR [--shards N] [--dtype F32|F16|BF16] [--seed S]
                          [--pretokenizer llama3|qwen2|digits] [--tokenizer-only]

On a development machine, `--reference FILE` also runs transformers (pip install torch==2.5.1
transformers==4.46.3 tokenizers==0.20.3) on the F32 folder and writes its fp32 logits for a few
prompts, and `--tokenizer-fixture FILE` writes the ids HF `tokenizers` gives the committed
tokenizer corpus (tests/data/tokenizer_smollm2.json); both outputs are committed fixtures.
"""
import argparse
import array
import json
import math
import os
import random
import struct

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 96,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "hidden_act": "silu",
    "torch_dtype": "float32",
    "bos_token_id": 266,
    "eos_token_id": 270,
}
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "r e", "a n", "Ġ s"]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")
PROMPTS = [[266, 5, 72, 101, 108, 108, 111], list(range(260, 266)) + [32, 116, 104, 101],
           [(i * 37) % 271 for i in range(40)]]


def byte_alphabet():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def vocab():
    alpha = byte_alphabet()
    tokens = [alpha[b] for b in range(256)] + [m.replace(" ", "") for m in MERGES] + SPECIALS
    return tokens


def shapes():
    c = CONFIG
    h, i, v = c["hidden_size"], c["intermediate_size"], len(vocab())
    d = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    out = [("model.embed_tokens.weight", [v, h]), ("model.norm.weight", [h]),
           ("lm_head.weight", [v, h])]
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        out += [(p + "input_layernorm.weight", [h]),
                (p + "self_attn.q_proj.weight", [q, h]), (p + "self_attn.q_proj.bias", [q]),
                (p + "self_attn.k_proj.weight", [kv, h]), (p + "self_attn.k_proj.bias", [kv]),
                (p + "self_attn.v_proj.weight", [kv, h]), (p + "self_attn.v_proj.bias", [kv]),
                (p + "self_attn.o_proj.weight", [h, q]),
                (p + "post_attention_layernorm.weight", [h]),
                (p + "mlp.gate_proj.weight", [i, h]), (p + "mlp.up_proj.weight", [i, h]),
                (p + "mlp.down_proj.weight", [h, i])]
    return out


def values(seed, index, name, n):
    """Uniform in [-0.15, 0.15) (norms: 1 +/- 0.15), rounded down to bfloat16 so that every
    dtype stores the same numbers. Python's random.Random(int).random() sequence is guaranteed
    to be the same across Python versions."""
    rng = random.Random(seed * 1000003 + index)
    offset = 1.0 if "norm" in name else 0.0
    raw = [(rng.random() - 0.5) * 0.3 + offset for _ in range(n)]
    bits = array.array("I", struct.pack(f"<{n}f", *raw))
    for k in range(n):
        bits[k] &= 0xFFFF0000
    return list(array.array("f", bits.tobytes()))


def encode(vals, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(vals)}f", *vals)
    if dtype == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    raw = struct.pack(f"<{len(vals)}f", *vals)
    return b"".join(raw[4 * k + 2:4 * k + 4] for k in range(len(vals)))


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def pre_tokenizer(kind):
    if kind == "digits":  # SmolLM2's own tokenizer.json
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]}
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT if kind == "llama3" else QWEN2_SPLIT},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}


def write_tokenizer(out, kind="llama3"):
    tokens = vocab()
    model_vocab = {t: i for i, t in enumerate(tokens[:256 + len(MERGES)])}
    tj = {
        "version": "1.0",
        "added_tokens": [{"id": 256 + len(MERGES) + k, "content": s, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                         for k, s in enumerate(SPECIALS)],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer(kind),
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>",
                                                      "ids": [266],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": model_vocab, "merges": MERGES},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    tc = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
          "chat_template": CHAT_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False)


def write_model(out, shards, dtype, seed, kind="llama3", tokenizer_only=False):
    os.makedirs(out, exist_ok=True)
    if tokenizer_only:
        write_tokenizer(out, kind)
        return
    config = dict(CONFIG)
    config["vocab_size"] = len(vocab())
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    tensors = [(name, shape, encode(values(seed, k, name, math.prod(shape)), dtype))
               for k, (name, shape) in enumerate(shapes())]
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), tensors, dtype)
    else:
        weight_map = {}
        per = math.ceil(len(tensors) / shards)
        for s in range(shards):
            part = tensors[s * per:(s + 1) * per]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(out, fname), part, dtype)
            weight_map.update({name: fname for name, _, _ in part})
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(len(t[2]) for t in tensors)},
                       "weight_map": weight_map}, f, indent=1)
    write_tokenizer(out, kind)


def write_reference(out, path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    cases = []
    with torch.no_grad():
        for prompt in PROMPTS:
            logits = model(torch.tensor([prompt])).logits[0]
            cases.append({"tokens": prompt,
                          "logits": [[round(float(x), 6) for x in row] for row in logits]})
    with open(path, "w") as f:
        json.dump({"generator": "scripts/make_tiny_hf_model.py", "transformers": "4.46.3",
                   "torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")


def write_tokenizer_fixture(out, corpus, path):
    """Ids of the whole corpus for the Llama 3 split (`path`), and of every third string for
    the Qwen2 split and for Digits + ByteLevel (`path` with _variants before .json)."""
    import tempfile

    from tokenizers import Tokenizer

    with open(corpus, encoding="utf-8") as f:
        texts = [c["text"] for c in json.load(f)["cases"]]
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    with open(path, "w") as f:
        json.dump({"generator": "scripts/make_tiny_hf_model.py", "tokenizers": "0.20.3",
                   "corpus": "tokenizer_smollm2.json", "ids": ids}, f, separators=(",", ":"))
        f.write("\n")
    variants = {}
    for kind in ("qwen2", "digits"):
        with tempfile.TemporaryDirectory() as tmp:
            write_tokenizer(tmp, kind)
            tok = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
            variants[kind] = {"stride": 3, "ids": [tok.encode(t, add_special_tokens=False).ids
                                                   for t in texts[::3]]}
    with open(path.replace(".json", "_variants.json"), "w") as f:
        json.dump({"generator": "scripts/make_tiny_hf_model.py", "tokenizers": "0.20.3",
                   "corpus": "tokenizer_smollm2.json", "variants": variants}, f,
                  separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--pretokenizer", default="llama3", choices=["llama3", "qwen2", "digits"])
    ap.add_argument("--tokenizer-only", action="store_true")
    ap.add_argument("--reference")
    ap.add_argument("--tokenizer-fixture")
    args = ap.parse_args()
    write_model(args.out, args.shards, args.dtype, args.seed, args.pretokenizer,
                args.tokenizer_only)
    if args.reference:
        write_reference(args.out, args.reference)
    if args.tokenizer_fixture:
        corpus = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "tests", "data", "tokenizer_smollm2.json")
        write_tokenizer_fixture(args.out, corpus, args.tokenizer_fixture)


if __name__ == "__main__":
    main()
