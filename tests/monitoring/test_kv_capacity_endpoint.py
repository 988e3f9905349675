"""The KV memory budget end to end: a real `kvserve serve` (127.0.0.1, default model shapes,
random weights) logs bytes per token with its factors, blocks, tokens and concurrent sequences at
start, and /metrics exports the same numbers as gauges. Each KV dtype the CPU backend accepts is
started with the same --kv-cache-memory; 8-bit ones must report about twice bf16's tokens."""

import os
import re
import sys

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "net"))
from kvserve_harness import KvServe, parse_args  # noqa: E402

MEMORY = 64 * 1024 * 1024
MAX_MODEL_LEN = 4096


def gauges(text):
    """{series: value} of every sample line (series = name plus labels as rendered)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
    return out


def run(binary, model_args, dtype):
    """Starts kvserve with `dtype`; returns (log lines, gauges) or None when it refuses."""
    args = ["--kv-cache-memory", str(MEMORY), "--max-model-len", str(MAX_MODEL_LEN),
            "--kv-cache-dtype", dtype, "--device", "cpu"]
    try:
        with KvServe(binary, args, model_args=model_args) as s:
            # One request first, so the live block gauges have been published by a step.
            r = requests.post(s.url + "/v1/completions", timeout=120, json={
                "prompt": "Hello", "max_tokens": 2, "ignore_eos": True})
            assert r.status_code == 200, r.text
            text = requests.get(s.url + "/metrics", timeout=30).text
            log = list(s.stderr_lines)
            assert s.stop() == 0
    except RuntimeError as e:
        if "does not store" in str(e) or "not supported" in str(e):
            print(f"{dtype}: refused by the backend, skipped")
            return None
        raise
    return log, gauges(text)


def check(dtype, log, g):
    per_token = [v for k, v in g.items() if k.startswith("kvserve_kv_cache_bytes_per_token{")]
    assert len(per_token) == 1, g
    per_token = per_token[0]
    no_gqa = [v for k, v in g.items()
              if k.startswith("kvserve_kv_cache_bytes_per_token_without_gqa{")]
    blocks = g["kvserve_kv_cache_blocks_total"]
    tokens = g["kvserve_kv_cache_tokens_capacity"]
    info = [k for k in g if k.startswith("kvserve_kv_cache_info{")]
    assert len(info) == 1, g
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info[0]))
    layers, kv_heads, heads = int(labels["layers"]), int(labels["kv_heads"]), int(labels["heads"])
    head_dim, block_size = int(labels["head_dim"]), int(labels["block_size"])
    elem, scale = int(labels["element_bytes"]), int(labels["scale_bytes"])
    # The factors multiply out to the bytes per token, GQA's saving is heads / kv_heads.
    assert per_token == 2 * layers * kv_heads * (head_dim * elem + scale), (labels, per_token)
    assert no_gqa and no_gqa[0] == per_token * heads / kv_heads
    assert tokens == blocks * block_size
    assert g["kvserve_kv_cache_memory_bytes"] == tokens * per_token <= MEMORY
    assert MEMORY - tokens * per_token < block_size * per_token  # whole blocks, none left out
    # The live block gauges add up to the pool.
    live = sum(v for k, v in g.items() if k.startswith("kvserve_kv_cache_blocks{"))
    assert live == blocks, (live, blocks)
    assert g["kvserve_max_model_len"] == MAX_MODEL_LEN
    for context in (2048, MAX_MODEL_LEN):
        want = blocks // -(-context // block_size)
        assert g[f'kvserve_kv_cache_max_sequences{{context="{context}"}}'] == want
    # The log says the same.
    text = "".join(log)
    assert f"{int(per_token)} bytes per token = 2 (K,V) x {layers} layers x {kv_heads} KV heads" \
        in text, text
    assert f"{int(blocks)} blocks of {block_size} tokens = {int(tokens)} tokens" in text, text
    assert f"at {MAX_MODEL_LEN} tokens (max-model-len)" in text, text
    assert f"without GQA: {heads} KV heads" in text, text
    return tokens


def main():
    a = parse_args()
    tokens = {}
    for dtype in ("auto", "bf16", "fp8", "int8"):
        got = run(a.kvserve, a.model_args, dtype)
        if got is None:
            continue
        tokens[dtype] = check(dtype, *got)
        print(f"{dtype}: {int(tokens[dtype])} tokens in {MEMORY} bytes")
    assert "auto" in tokens
    for dtype in ("fp8", "int8"):
        if dtype in tokens and "bf16" in tokens:
            ratio = tokens[dtype] / tokens["bf16"]
            assert 1.8 <= ratio <= 2.0, (dtype, ratio)
    print("ok")


if __name__ == "__main__":
    main()
