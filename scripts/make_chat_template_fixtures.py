#!/usr/bin/env python3
"""Makes tests/data/chat_templates.json: conversations rendered by the real Jinja chat
templates (SmolLM2's, read from the default model's GGUF, and the Llama 3 and Llama 2 chat
templates) the way transformers renders them (jinja2 sandbox, trim_blocks, lstrip_blocks).
kvserve's chat_template test checks it renders the same text without Jinja. Runs on a
development machine (pip install jinja2==3.1.4 gguf==0.10.0 numpy sentencepiece), not in CI.
"""
import json
import os

from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "chat_templates.json")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  And 3+3?\n"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell a joke"},
     {"role": "assistant", "content": " Why did the cache miss? "},
     {"role": "user", "content": "Why?"}],
    [{"role": "user", "content": "日本語で答えて 😀\nline two"}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}],
]


def smollm2_template():
    from gguf import GGUFReader
    field = GGUFReader(MODEL).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


def render(template, messages, gen, bos, eos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=gen,
                                            bos_token=bos, eos_token=eos)


def main():
    templates = [
        ("chatml", smollm2_template(), "<|im_start|>", "<|im_end|>"),
        ("llama3", LLAMA3, "<|begin_of_text|>", "<|end_of_text|>"),
        ("llama2", LLAMA2, "<s>", "</s>"),
    ]
    out = []
    for family, template, bos, eos in templates:
        cases = []
        for messages in CONVERSATIONS:
            if family == "llama2" and messages[0]["role"] == "assistant":
                continue  # Llama 2's template requires user/assistant alternation
            for gen in (True, False):
                cases.append({"messages": messages, "add_generation_prompt": gen,
                              "expected": render(template, messages, gen, bos, eos)})
        out.append({"family": family, "template": template, "bos": bos, "eos": eos,
                    "cases": cases})
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
