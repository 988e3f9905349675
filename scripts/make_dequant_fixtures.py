#!/usr/bin/env python3
"""Makes tests/data/dequant_blocks.json: seeded random blocks of each quantised ggml type
kvserve reads, with the values the `gguf` Python package (0.10.0) dequantises them to, so
kvserve's dequantisation is checked block by block against an independent implementation.
Runs on a development machine (pip install gguf==0.10.0 numpy), not in CI.
"""
import json
import os

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "dequant_blocks.json")
SEED = 1126
BLOCKS = 4  # per type
# Byte offsets of fp16 scale fields inside one block: kept finite and moderate.
FP16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
               "Q4_K": [0, 2], "Q6_K": [208]}


def main():
    rng = np.random.default_rng(SEED)
    out = []
    for name, fields in FP16_FIELDS.items():
        qtype = GGMLQuantizationType[name]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, type_size), dtype=np.uint8)
        for b in range(BLOCKS):
            for off in fields:
                scale = np.float16(rng.uniform(-0.1, 0.1) if name != "Q4_K" else rng.uniform(0, 0.1))
                raw[b, off:off + 2] = np.frombuffer(scale.tobytes(), dtype=np.uint8)
        values = dequantize(raw.reshape(-1), qtype).astype(np.float32)
        assert values.size == BLOCKS * block_size
        out.append({"type": name, "type_id": int(qtype), "hex": raw.tobytes().hex(),
                    "values": [float(v) for v in values]})
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/make_dequant_fixtures.py", "gguf": "0.10.0",
                   "seed": SEED, "types": out}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
