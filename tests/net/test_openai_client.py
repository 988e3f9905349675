"""The official `openai` client against kvserve (streaming and not, logprobs, echo), curl for
SSE, and the vLLM-shaped /tokenize, /detokenize."""

import json
import math
import subprocess
import sys

import openai
import requests

from kvserve_harness import KvServe, parse_args


def check_completions(client, model, url):
    r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                  temperature=0, logprobs=2)
    c = r.choices[0]
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    lp = c.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert len(lp.tokens) == r.usage.completion_tokens
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0.0 and not math.isnan(chosen)
        assert 1 <= len(top) <= 3  # the sampled token plus up to 2 alternatives
        # Greedy: the sampled token is the most likely one.
        assert chosen >= max(top.values()) - 1e-4, (chosen, top)

    # Same prompt again: the prefix cache may serve whole blocks; cached <= prompt.
    r2 = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4,
                                   temperature=0)
    details = r2.usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else 0
    assert 0 <= cached <= r2.usage.prompt_tokens

    # Token-id prompt with echo + logprobs: prompt logprobs first, the first one null.
    ids = requests.post(url + "/tokenize", json={"prompt": "Hello there, how are"},
                        timeout=30).json()["tokens"]
    r3 = client.completions.create(model=model, prompt=ids, max_tokens=3, temperature=0,
                                   echo=True, logprobs=1)
    lp3 = r3.choices[0].logprobs
    assert lp3.token_logprobs[0] is None
    assert len(lp3.tokens) == len(ids) + r3.usage.completion_tokens, (len(lp3.tokens), len(ids))
    assert r3.choices[0].text.startswith("Hello there, how are")

    # Streaming: concatenated chunks equal the non-streamed greedy text.
    chunks = list(client.completions.create(model=model, prompt="The capital of France is",
                                            max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == c.text, (text, c.text)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1

    # vLLM extras pass through: ignore_eos + min_tokens give exactly max_tokens.
    r4 = client.completions.create(model=model, prompt="Hi", max_tokens=6, temperature=0.8,
                                   extra_body={"ignore_eos": True, "min_tokens": 6, "top_k": 20,
                                               "cache_salt": "tenant-a"})
    assert r4.usage.completion_tokens == 6, r4.usage


def check_chat(client, model):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a colour."}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=10,
                                       temperature=0, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.finish_reason in ("stop", "length")
    content = c.logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        assert entry.bytes == list(entry.token.encode("utf-8"))
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=10,
                                            temperature=0, stream=True)
    pieces = []
    roles = []
    finish = None
    for ch in stream:
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        if d.role:
            roles.append(d.role)
        if d.content:
            pieces.append(d.content)
        finish = ch.choices[0].finish_reason or finish
    assert roles == ["assistant"]
    assert "".join(pieces) == c.message.content
    assert finish == c.finish_reason


def check_errors(client, model):
    try:
        client.completions.create(model=model, prompt="x", max_tokens=1, top_p=5)
        raise AssertionError("top_p=5 was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.body["code"] == "invalid_argument", e.body
    try:
        client.completions.create(model="not-this-model", prompt="x", max_tokens=1)
        raise AssertionError("a wrong model was accepted")
    except openai.NotFoundError:
        pass


def check_curl_sse(url, model):
    body = json.dumps({"model": model, "prompt": "One, two,", "max_tokens": 5,
                       "temperature": 0, "stream": True})
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "60", url + "/v1/completions",
                          "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=90, check=True).stdout
    events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(p["object"] == "text_completion" for p in parsed)


def check_tokenize(url):
    t = requests.post(url + "/tokenize", json={"prompt": "Hello world"}, timeout=30).json()
    assert t["count"] == len(t["tokens"]) > 0 and t["max_model_len"] > 0
    d = requests.post(url + "/detokenize", json={"tokens": t["tokens"]}, timeout=30).json()
    assert d["prompt"] == "Hello world", d
    bad = requests.post(url + "/detokenize", json={"tokens": [-5]}, timeout=30)
    assert bad.status_code == 400


def main():
    args = parse_args()
    with KvServe(args.kvserve, model_args=args.model_args) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", timeout=120,
                               max_retries=0)
        model = client.models.list().data[0].id
        check_completions(client, model, s.url)
        check_chat(client, model)
        check_errors(client, model)
        check_curl_sse(s.url, model)
        check_tokenize(s.url)
    print("openai client test: ok")


if __name__ == "__main__":
    sys.exit(main())
