#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (small, committed; see
docs/FUZZING.md): tiny GGUF models with a tokenizer in every supported tensor type, K-quant
tensors, a metadata-only file with every value type, truncated and malformed files; safetensors
files (valid, and with the errors the reader must reject) and config.json texts; tokenizer
texts. Deterministic (seeded); needs only Python. Regression inputs (crash-*) are not written
here: they are added by hand when a fuzzer finds something."""
import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

# ggml type id -> (block elements, block bytes)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
         8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}


def gstr(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv_u8(v): return 0, struct.pack("<B", v)
def kv_i8(v): return 1, struct.pack("<b", v)
def kv_u16(v): return 2, struct.pack("<H", v)
def kv_i16(v): return 3, struct.pack("<h", v)
def kv_u32(v): return 4, struct.pack("<I", v)
def kv_i32(v): return 5, struct.pack("<i", v)
def kv_f32(v): return 6, struct.pack("<f", v)
def kv_bool(v): return 7, struct.pack("<?", v)
def kv_str(v): return 8, gstr(v)
def kv_u64(v): return 10, struct.pack("<Q", v)
def kv_i64(v): return 11, struct.pack("<q", v)
def kv_f64(v): return 12, struct.pack("<d", v)


def kv_array(elem_type, payloads):
    return 9, struct.pack("<IQ", elem_type, len(payloads)) + b"".join(payloads)


def kv_strs(items):
    return kv_array(8, [gstr(x) for x in items])


def kv_i32s(items):
    return kv_array(5, [struct.pack("<i", x) for x in items])


def gguf(kv, tensors, version=3, alignment=32):
    """kv: {key: (type, payload)}; tensors: [(name, dims, type, data)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, (vtype, payload) in kv.items():
        out += gstr(key) + struct.pack("<I", vtype) + payload
    offset, blobs = 0, []
    for name, dims, ttype, data in tensors:
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset)
        pad = (-len(data)) % alignment
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % alignment)
    return out + b"".join(blobs)


def tensor(rng, name, dims, ttype):
    count = 1
    for d in dims:
        count *= d
    block, size = TYPES[ttype]
    if ttype == 0:
        return name, dims, ttype, struct.pack(f"<{count}f", *[rng.uniform(-1, 1) for _ in range(count)])
    if ttype == 1:  # f16 in [-1, 1): sign, exponent below 15
        return name, dims, ttype, b"".join(
            struct.pack("<H", rng.randrange(2) << 15 | rng.randrange(1, 15) << 10 | rng.randrange(1024))
            for _ in range(count))
    return name, dims, ttype, bytes(rng.randrange(256) for _ in range(count // block * size))


def tokenizer_kv():
    # A byte-level vocabulary of a few letters (others fall to UNK), merges that fire at the
    # start of a word ("h e": the regression of a read before the first symbol) and specials.
    tokens = ["<unk>"] + list("abcdehlost ") + ["Ġ", "1", "2", "3", "he", "Ġt", "hel", "hell",
                                                  "<|im_start|>", "<|im_end|>"]
    kinds = [2] + [1] * (len(tokens) - 3) + [3, 3]
    return {"tokenizer.ggml.model": kv_str("gpt2"), "tokenizer.ggml.pre": kv_str("smollm"),
            "tokenizer.ggml.tokens": kv_strs(tokens), "tokenizer.ggml.token_type": kv_i32s(kinds),
            "tokenizer.ggml.merges": kv_strs(["h e", "Ġ t", "he l", "hel l"]),
            "tokenizer.ggml.unknown_token_id": kv_u32(0),
            "tokenizer.ggml.eos_token_id": kv_u32(len(tokens) - 1),
            "tokenizer.chat_template": kv_str("{{'<|im_start|>' + m + '<|im_end|>'}}")}, len(tokens)


def tiny_model(rng, h, heads, kv_heads, inter, types):
    tok, vocab = tokenizer_kv()
    kv = {"general.architecture": kv_str("llama"), "general.name": kv_str("seed"),
          "general.alignment": kv_u32(32),
          "llama.embedding_length": kv_u32(h), "llama.block_count": kv_u32(1),
          "llama.feed_forward_length": kv_u32(inter), "llama.attention.head_count": kv_u32(heads),
          "llama.attention.head_count_kv": kv_u32(kv_heads), "llama.context_length": kv_u32(64),
          "llama.rope.freq_base": kv_f32(10000.0), "llama.vocab_size": kv_u32(vocab),
          "llama.attention.layer_norm_rms_epsilon": kv_f32(1e-5)}
    kv.update(tok)
    kvd = kv_heads * (h // heads)
    pick = lambda i: types[i % len(types)]
    tensors = [tensor(rng, "token_embd.weight", [h, vocab], pick(0)),
               tensor(rng, "output_norm.weight", [h], 0),
               tensor(rng, "blk.0.attn_norm.weight", [h], 0),
               tensor(rng, "blk.0.attn_q.weight", [h, h], pick(1)),
               tensor(rng, "blk.0.attn_k.weight", [h, kvd], pick(2)),
               tensor(rng, "blk.0.attn_v.weight", [h, kvd], pick(3)),
               tensor(rng, "blk.0.attn_output.weight", [h, h], pick(4)),
               tensor(rng, "blk.0.ffn_norm.weight", [h], 0),
               tensor(rng, "blk.0.ffn_gate.weight", [h, inter], pick(5)),
               tensor(rng, "blk.0.ffn_up.weight", [h, inter], pick(6)),
               tensor(rng, "blk.0.ffn_down.weight", [inter, h], pick(7))]
    return kv, tensors


def gguf_seeds(rng):
    seeds = {}
    kv, ts = tiny_model(rng, 8, 2, 1, 8, [0, 1, 30])
    seeds["tiny_float.gguf"] = gguf(kv, ts)
    kv, ts = tiny_model(rng, 32, 4, 2, 32, [2, 3, 6, 7, 8])
    quant = gguf(kv, ts)
    seeds["tiny_quant.gguf"] = quant
    seeds["tiny_quant_v2.gguf"] = quant[:4] + struct.pack("<I", 2) + quant[8:]
    # Cut inside the tensor infos and inside the data.
    seeds["truncated_infos.gguf"] = quant[:quant.index(b"blk.0.ffn_gate.weight") + 10]
    seeds["truncated_data.gguf"] = quant[:len(quant) - 100]
    seeds["kquants.gguf"] = gguf(
        {"general.architecture": kv_str("llama")},
        [tensor(rng, "blk.0.ffn_down.weight", [256, 2], 12),
         tensor(rng, "output.weight", [256, 2], 14)], alignment=64)
    every = {"u8": kv_u8(200), "i8": kv_i8(-5), "u16": kv_u16(60000), "i16": kv_i16(-300),
             "u32": kv_u32(7), "i32": kv_i32(-7), "f32": kv_f32(0.5), "bool": kv_bool(True),
             "str": kv_str("\u00e9t\u00e9"), "u64": kv_u64(1 << 40), "i64": kv_i64(-(1 << 40)),
             "f64": kv_f64(2.5), "floats": kv_array(6, [struct.pack("<f", 1.5)] * 3),
             "nested": kv_array(9, [struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)]),
             "empty": kv_array(8, [])}
    tok, _ = tokenizer_kv()
    every.update(tok)
    seeds["metadata_only.gguf"] = gguf(every, [])
    return seeds


def safetensors(header, data):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds(rng):
    seeds = {}
    size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    for dtype in size:
        header, data, off = {}, b"", 0
        for name, shape in (("model.norm.weight", [8]), ("w", [2, 3]), ("scalar", [])):
            n = 1
            for d in shape:
                n *= d
            header[name] = {"dtype": dtype, "shape": shape,
                            "data_offsets": [off, off + n * size[dtype]]}
            data += bytes(rng.randrange(256) for _ in range(n * size[dtype]))
            off += n * size[dtype]
        header["__metadata__"] = {"format": "pt"}
        seeds[f"{dtype}.safetensors"] = safetensors(header, data)
    ok = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    seeds["past_end.safetensors"] = safetensors(
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    seeds["overlap.safetensors"] = safetensors(
        dict(ok, b={"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}), b"\0" * 12)
    seeds["shape_mismatch.safetensors"] = safetensors(
        {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    seeds["empty_shape_dim.safetensors"] = safetensors(
        {"a": {"dtype": "BF16", "shape": [0, 5], "data_offsets": [0, 0]}}, b"")
    text = json.dumps(ok).encode()
    seeds["header_len_past_end.safetensors"] = struct.pack("<Q", 1 << 40) + text + b"\0" * 8
    seeds["bad_json.safetensors"] = struct.pack("<Q", len(text)) + text[:-3] + b"\0" * 11
    seeds["empty.safetensors"] = safetensors({}, b"")
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5,
              "rope_theta": 500000.0, "max_position_embeddings": 256, "tie_word_embeddings": False,
              "attention_bias": False, "torch_dtype": "bfloat16",
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
    seeds["config_llama3.json"] = json.dumps(config).encode()
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], rope_scaling=None,
                  tie_word_embeddings=True, attention_bias=True)
    seeds["config_qwen2.json"] = json.dumps(config).encode()
    return seeds


def tokenizer_seeds():
    with open(os.path.join(ROOT, "tests", "data", "tokenizer_smollm2.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    seeds, count = {}, {}
    for c in cases:
        k = count.get(c["category"], 0)
        if k < 2:
            seeds[f"{c['category']}_{k}.txt"] = c["text"].encode()[:2048]
            count[c["category"]] = k + 1
    seeds["invalid_utf8.txt"] = b"ab\xff\xfe c\xc3 \xe2\x82 d\xf0\x9f\x98 \xed\xa0\x80 end"
    seeds["specials.txt"] = "<|im_start|>user\nhi</s><|im_end|>\n<|im_start|>assistant\n".encode()
    seeds["nul_and_controls.txt"] = b"a\0b\x01\x7f\r\n\t \x0b\x0c"
    return seeds


def byte_alphabet():
    """GPT-2's byte-to-character map (bytes that print as themselves, the rest from U+0100)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_tokenizer_seeds():
    alphabet = byte_alphabet()
    vocab = {alphabet[b]: b for b in range(256)}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("\u0120", "t")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    specials = ["<|begin_of_text|>", "<|eot_id|>"]
    added = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i, t in enumerate(specials)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}

    def doc(pre, merge_form, normalizer=None, post=True):
        m = [f"{a} {b}" for a, b in merges] if merge_form == "strings" else [list(x) for x in merges]
        d = {"version": "1.0", "added_tokens": added, "normalizer": normalizer,
             "pre_tokenizer": pre, "post_processor": None,
             "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                         "use_regex": True},
             "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                       "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": m}}
        if post:
            d["post_processor"] = {"type": "TemplateProcessing", "single": [
                {"SpecialToken": {"id": specials[0], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "special_tokens": {specials[0]: {"id": specials[0], "ids": [added[0]["id"]],
                                                 "tokens": [specials[0]]}}}
        return json.dumps(d, ensure_ascii=False).encode()

    config = json.dumps({"bos_token": specials[0], "eos_token": specials[1],
                         "add_bos_token": True,
                         "chat_template": "{% for m in messages %}{{ m['content'] }}<|eot_id|>"
                                          "{% endfor %}"}).encode()
    split = {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT},
             "behavior": "Isolated", "invert": False}
    return {
        "bytelevel.json": doc(byte_level, "strings", post=False),
        "llama3_split.json": doc({"type": "Sequence", "pretokenizers": [
            split, dict(byte_level, use_regex=False)]}, "pairs") + b"\0\0" + config,
        "digits_nfc.json": doc({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}, "strings",
            normalizer={"type": "NFC"}) + b"\0\0" + config,
    }


def write(target, seeds):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def main():
    rng = random.Random(7)
    write("gguf_fuzzer", gguf_seeds(rng))
    write("safetensors_fuzzer", safetensors_seeds(rng))
    write("tokenizer_fuzzer", tokenizer_seeds())
    write("hf_tokenizer_fuzzer", hf_tokenizer_seeds())
    print("seeds written to", CORPUS)


if __name__ == "__main__":
    main()
