#!/usr/bin/env python3
"""Reference logits for the CPU backend test (tests/model/cpu_backend_test.cpp).

Runs the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) with Hugging Face transformers in
fp32 on chat prompts built with the model's own chat template, decodes 64 tokens greedily
(argmax, not stopping at EOS), and writes small fixtures:

  tests/data/reference_logits.json      per prompt: messages, prompt ids, continuation ids and,
                                        for every position (prompt and generated), the next
                                        token, max |logit|, the top-2 margin, the top-16 logits
                                        and the logits of a fixed set of probe token ids
  tests/data/reference_logits_full.bin  full fp32 (little-endian) logits rows at a few
                                        positions, indexed by "full_rows" in the JSON

Run on a development machine, not in CI:
  pip install torch==2.15.0 transformers==5.24.0 gguf==0.19.0 numpy==2.4.6
  python3 scripts/make_reference_logits.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "gguf": "0.19.0", "numpy": "2.4.6"}

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "Explain what a hash table is in two sentences."}],
    [{"role": "user", "content": "Write a short Python function that reverses a string."}],
    [{"role": "user", "content": "Give me three tips for sleeping better."}],
    [{"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a fun fact about octopuses."}],
    [{"role": "system", "content": "You answer in French."},
     {"role": "user", "content": "How many days are there in a leap year?"}],
]
NUM_NEW_TOKENS = 64
TOP = 16
PROBES = [i * 1531 + 7 for i in range(32)]  # fixed token ids spread over the vocabulary
FULL_ROWS = [(0, "last_prompt"), (0, 32), (1, "last_prompt"), (3, 16)]


def check_versions():
    import gguf  # noqa: F401  (transformers needs it for GGUF files)
    have = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", "?"), "numpy": np.__version__}
    for name, want in PINNED.items():
        if have[name] not in (want, "?"):
            print(f"warning: {name} {have[name]} (the fixtures were made with {want})",
                  file=sys.stderr)


def chat_ids(tokenizer, messages):
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(t) for t in out]


def position_record(logits, next_token):
    values, ids = torch.topk(logits, TOP)
    return {
        "next": int(next_token),
        "max_abs": round(float(logits.abs().max()), 5),
        "margin": round(float(values[0] - values[1]), 6),
        "top": [[int(i), round(float(v), 5)] for i, v in zip(ids, values)],
        "probe": [round(float(logits[p]), 5) for p in PROBES],
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(root, "models",
                                                        "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--out", default=os.path.join(root, "tests", "data"))
    args = parser.parse_args()
    check_versions()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic, and fast on a busy 2-core machine
    model_dir, gguf_file = os.path.split(os.path.abspath(args.model))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file,
                                                 dtype=torch.float32)
    model.eval()

    prompts = []
    full_rows = []
    full_data = []
    with torch.no_grad():
        for index, messages in enumerate(PROMPTS):
            prompt = chat_ids(tokenizer, messages)
            seq = list(prompt)
            positions = []
            # Prompt positions: one pass over the prompt.
            out = model(torch.tensor([seq]), use_cache=True)
            logits = out.logits[0].float()
            for p in range(len(prompt) - 1):
                positions.append(position_record(logits[p], prompt[p + 1]))
            step_logits = []
            # Greedy decoding with the KV cache, one token per step.
            for step in range(NUM_NEW_TOKENS):
                if step > 0:
                    out = model(torch.tensor([[seq[-1]]]), past_key_values=out.past_key_values,
                                use_cache=True)
                    logits = out.logits[0].float()
                last = logits[-1]
                token = int(torch.argmax(last))
                positions.append(position_record(last, token))
                step_logits.append(last.numpy().astype("<f4"))
                seq.append(token)
            for which_prompt, which in FULL_ROWS:
                if which_prompt != index:
                    continue
                step = 0 if which == "last_prompt" else which
                full_rows.append({"prompt": index, "position": len(prompt) - 1 + step,
                                  "row": len(full_data)})
                full_data.append(step_logits[step])
            prompts.append({"messages": messages, "prompt_ids": prompt,
                            "continuation_ids": seq[len(prompt):], "positions": positions})
            print(f"prompt {index}: {len(prompt)} tokens ->",
                  repr(tokenizer.decode(seq[len(prompt):])), file=sys.stderr)

    doc = {
        "generator": "scripts/make_reference_logits.py",
        "versions": PINNED,
        "model": os.path.basename(args.model),
        "vocab_size": int(model.config.vocab_size),
        "note": "positions[i] holds the logits at absolute position i (predicting i + 1)",
        "probe_ids": PROBES,
        "full_rows": full_rows,
        "prompts": prompts,
    }
    with open(os.path.join(args.out, "reference_logits.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    np.stack(full_data).astype("<f4").tofile(os.path.join(args.out, "reference_logits_full.bin"))


if __name__ == "__main__":
    main()
