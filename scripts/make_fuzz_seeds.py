#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (small, committed): GGUF files of a tiny llama model
with a tokenizer (several tensor types), safetensors files and config.json texts, and texts for
the tokenizer. Needs only Python."""
import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def gguf(kv, tensors, alignment=32):
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, (vtype, payload) in kv.items():
        out += s(key) + struct.pack("<I", vtype) + payload
    offset, blobs = 0, []
    for name, dims, ttype, data in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
        pad = (-len(data)) % alignment
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % alignment)
    return out + b"".join(blobs)


def u32(v):
    return 4, struct.pack("<I", v)


def f32(v):
    return 6, struct.pack("<f", v)


def string(v):
    b = v.encode()
    return 8, struct.pack("<Q", len(b)) + b


def str_array(items):
    body = b"".join(struct.pack("<Q", len(x.encode())) + x.encode() for x in items)
    return 9, struct.pack("<IQ", 8, len(items)) + body


def i32_array(items):
    return 9, struct.pack("<IQ", 5, len(items)) + b"".join(struct.pack("<i", x) for x in items)


def tiny_gguf(rng, types):
    h, heads, kv_heads, inter, vocab = 32, 4, 2, 32, 260
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    n, tokens = 0, []
    for b in range(256):
        if b in printable:
            tokens.append(chr(b))
        else:
            tokens.append(chr(256 + n))
            n += 1
    tokens += ["he", "Ġt", "<|im_start|>", "<|im_end|>"]
    kinds = [1] * 258 + [3, 3]
    kv = {"general.architecture": string("llama"), "general.name": string("seed"),
          "llama.embedding_length": u32(h), "llama.block_count": u32(1),
          "llama.feed_forward_length": u32(inter), "llama.attention.head_count": u32(heads),
          "llama.attention.head_count_kv": u32(kv_heads), "llama.context_length": u32(128),
          "llama.rope.freq_base": f32(10000.0),
          "llama.attention.layer_norm_rms_epsilon": f32(1e-5),
          "tokenizer.ggml.model": string("gpt2"), "tokenizer.ggml.pre": string("smollm"),
          "tokenizer.ggml.tokens": str_array(tokens), "tokenizer.ggml.token_type": i32_array(kinds),
          "tokenizer.ggml.merges": str_array(["h e", "Ġ t"]),
          "tokenizer.ggml.eos_token_id": u32(259),
          "tokenizer.chat_template": string("{{'<|im_start|>' + m + '<|im_end|>'}}")}
    sizes = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34), 12: (256, 144),
             14: (256, 210), 30: (1, 2)}

    def tensor(name, dims, t):
        count = 1
        for d in dims:
            count *= d
        block, size = sizes[t]
        data = bytes(rng.randrange(256) for _ in range(count // block * size))
        if t == 0:
            data = struct.pack(f"<{count}f", *[rng.uniform(-1, 1) for _ in range(count)])
        return name, dims, t, data

    q, kvd = heads * (h // heads), kv_heads * (h // heads)
    t = lambda i: types[i % len(types)]
    tensors = [tensor("token_embd.weight", [h, vocab], t(0)),
               tensor("output_norm.weight", [h], 0),
               tensor("blk.0.attn_norm.weight", [h], 0),
               tensor("blk.0.attn_q.weight", [h, q], t(1)),
               tensor("blk.0.attn_k.weight", [h, kvd], t(2)),
               tensor("blk.0.attn_v.weight", [h, kvd], t(3)),
               tensor("blk.0.attn_output.weight", [q, h], t(4)),
               tensor("blk.0.ffn_norm.weight", [h], 0),
               tensor("blk.0.ffn_gate.weight", [h, inter], t(5)),
               tensor("blk.0.ffn_up.weight", [h, inter], t(6)),
               tensor("blk.0.ffn_down.weight", [inter, h], t(7))]
    return gguf(kv, tensors)


def safetensors(rng, dtype):
    size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}[dtype]
    header, data, off = {}, b"", 0
    for name, shape in (("model.norm.weight", [8]), ("w", [2, 3])):
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n * size]}
        data += bytes(rng.randrange(256) for _ in range(n * size))
        off += n * size
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def main():
    rng = random.Random(7)
    for sub in ("gguf_fuzzer", "safetensors_fuzzer", "tokenizer_fuzzer"):
        os.makedirs(os.path.join(CORPUS, sub), exist_ok=True)
    for k, types in enumerate([[0], [1, 30], [2, 3, 8], [8, 3, 2, 1, 30, 0, 3, 8]]):
        with open(os.path.join(CORPUS, "gguf_fuzzer", f"tiny_{k}.gguf"), "wb") as f:
            f.write(tiny_gguf(rng, types))
    for dtype in ("F32", "F16", "BF16", "I64"):
        with open(os.path.join(CORPUS, "safetensors_fuzzer", f"{dtype}.safetensors"), "wb") as f:
            f.write(safetensors(rng, dtype))
    config = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 100, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    with open(os.path.join(CORPUS, "safetensors_fuzzer", "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(ROOT, "tests", "data", "tokenizer_smollm2.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    picked = {}
    for c in cases:
        picked.setdefault(c["category"], [])
        if len(picked[c["category"]]) < 3:
            picked[c["category"]].append(c["text"])
    for cat, texts in picked.items():
        for k, text in enumerate(texts):
            with open(os.path.join(CORPUS, "tokenizer_fuzzer", f"{cat}_{k}.txt"), "wb") as f:
                f.write(text.encode()[:4096])
    print("seeds written to", CORPUS)


if __name__ == "__main__":
    main()
