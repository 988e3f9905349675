#!/usr/bin/env python3
"""Makes tests/data/smollm2_weight_probes.json: sampled values of the default model's weights
as transformers reads its GGUF (dequantised by the `gguf` package, Q/K rows un-permuted back to
HF's layout), so kvserve's GGUF loader can be checked against an independent reader. Runs on a
development machine (same pinned venv as make_tokenizer_fixtures.py), not in CI.
"""
import json
import os
import random

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "smollm2_weight_probes.json")
TENSORS = {  # HF name -> kvserve field (layer index, name)
    "model.embed_tokens.weight": "token_embedding",
    "model.norm.weight": "final_norm",
    "model.layers.0.self_attn.q_proj.weight": "layers.0.wq",
    "model.layers.0.self_attn.k_proj.weight": "layers.0.wk",
    "model.layers.0.self_attn.v_proj.weight": "layers.0.wv",
    "model.layers.0.self_attn.o_proj.weight": "layers.0.wo",
    "model.layers.0.mlp.gate_proj.weight": "layers.0.w_gate",
    "model.layers.0.mlp.up_proj.weight": "layers.0.w_up",
    "model.layers.0.mlp.down_proj.weight": "layers.0.w_down",
    "model.layers.0.input_layernorm.weight": "layers.0.attn_norm",
    "model.layers.0.post_attention_layernorm.weight": "layers.0.ffn_norm",
    "model.layers.29.self_attn.q_proj.weight": "layers.29.wq",
    "model.layers.29.self_attn.k_proj.weight": "layers.29.wk",
}


def main():
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    assert transformers.__version__ == "4.46.3", transformers.__version__
    state = load_gguf_checkpoint(MODEL, return_tensors=True)["tensors"]
    r = random.Random(7)
    probes = []
    for hf_name, field in TENSORS.items():
        t = state[hf_name].float().numpy()
        t2 = t.reshape(t.shape[0], -1)
        samples = []
        for _ in range(48):
            i = r.randrange(t2.shape[0])
            j = r.randrange(t2.shape[1])
            samples.append([i, j, float(t2[i, j])])
        probes.append({
            "hf_name": hf_name,
            "field": field,
            "shape": list(t.shape),
            "samples": samples,
            # Whole rows: catch a permutation that happens to keep sampled values.
            "row_sums": [float(np.sum(t2[i], dtype=np.float64)) for i in range(min(16, t2.shape[0]))],
        })
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/make_gguf_weight_probes.py", "transformers": "4.46.3",
                   "probes": probes}, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
