#!/usr/bin/env python3
"""Makes tests/data/tokenizer_smollm2.json: >= 2,000 seeded strings in named categories with
the token ids that Hugging Face transformers gives them when it reads the default model's GGUF
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`). kvserve's tokenizer test checks it
produces identical ids. Runs on a development machine, not in CI (the fixture is committed):

    python3 -m venv .cache/tok-venv
    .cache/tok-venv/bin/pip install transformers==4.46.3 tokenizers==0.20.3 gguf==0.10.0 \
        torch==2.5.1 numpy==1.26.4 sentencepiece==0.2.0 protobuf==5.28.3
    .cache/tok-venv/bin/python scripts/make_tokenizer_fixtures.py

Ids are taken with add_special_tokens=False: transformers 4.46's GGUF reader turns on
add_bos_token (and swaps BOS and EOS) whatever the file says, so its "special tokens" would not
be the model's.
"""
import json
import os
import random
import sys
import tempfile

SEED = 20261126
PINNED = {"transformers": "4.46.3", "tokenizers": "0.20.3", "gguf": "0.10.0"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer_smollm2.json")

WORDS = ("the of and to in is was for that with as on by he it at from his an were are which "
         "this be or had not but have they one you all their has been also its first new who "
         "time can would there people after more other into two world when what year only some "
         "could these them may about than then most such many state over made used through "
         "between during known city under being where American national while however because "
         "government system several university including before well life three both since "
         "language tokenizer streaming inference server cache block prefix eviction Hello "
         "running jumped quickly don't can't I'm you're we've they'll she'd it's O'Brien "
         "naïve café résumé coöperate façade Zürich São Paulo").split()
PUNCT = list(".,;:!?-—–()[]{}\"'`/\\@#$%^&*_+=<>|~…«»“”‘’")

SCRIPTS = {
    "chinese": "我们今天讨论的是大型语言模型的推理服务器以及键值缓存的设计问题这是一个很有意思的话题",
    "japanese": "これはテストです。東京の天気は晴れでしょう。カタカナとひらがなと漢字を混ぜて書きます",
    "korean": "안녕하세요 반갑습니다 오늘은 날씨가 좋네요 한국어 텍스트를 토큰화합니다",
    "arabic": "مرحبا بالعالم هذه جملة باللغة العربية لاختبار المقسم",
    "hebrew": "שלום עולם זהו משפט בעברית לבדיקה",
    "hindi": "नमस्ते दुनिया यह हिंदी में एक वाक्य है परीक्षण के लिए",
    "russian": "Привет мир это предложение на русском языке для проверки токенизатора",
    "greek": "Γεια σου κόσμε αυτή είναι μια πρόταση στα ελληνικά",
    "thai": "สวัสดีชาวโลก นี่คือประโยคภาษาไทยสำหรับการทดสอบ",
    "vietnamese": "Xin chào thế giới đây là một câu tiếng Việt để kiểm tra",
    "tamil": "வணக்கம் உலகம் இது ஒரு தமிழ் வாக்கியம்",
    "georgian": "გამარჯობა მსოფლიო ეს არის ქართული წინადადება",
    "armenian": "Բարեւ աշխարհ սա հայերեն նախադասություն է",
    "amharic": "ሰላም ለዓለም ይህ የአማርኛ ዓረፍተ ነገር ነው",
    "german": "Größenordnung Straße Übermäßig schön ÄÖÜ äöüß Fußgängerübergänge",
    "polish": "Zażółć gęślą jaźń — pchnąć w tę łódź jeża lub ośm skrzyń fig",
}
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "🇩🇪", "🇯🇵", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "✨",
         "🚀", "🤖", "☕", "⚠️", "✅", "🔥", "🙏🏻", "🫠", "1️⃣", "#️⃣", "👩‍❤️‍💋‍👨", "🐍", "🦀"]
WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0",
              "\u3000", "\u2028", "\u2009", "\u200b", "\u0085", "\f", "\v", "        "]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>",
            "<jupyter_code>", "<empty_output>"]
CODE = [
    "def {n}(x, y=None):\n    return x + {k}\n",
    "for (int i = 0; i < {k}; ++i) {{\n\t{n}[i] = i * 2;\n}}\n",
    "const {n} = async () => {{ await fetch('/api/{n}?q={k}'); }};",
    "#include <vector>\nstd::vector<float> {n}({k}, 0.0f);",
    "SELECT {n}, COUNT(*) FROM t WHERE id > {k} GROUP BY {n};",
    "if {n} != nil {{\n\treturn fmt.Errorf(\"bad %d\", {k})\n}}",
    "    # TODO({n}): fix off-by-one at line {k}\n",
    "<div class=\"{n}\">{k}</div>",
    "{{\"{n}\": [{k}, true, null, \"x\\ty\"]}}",
    "fn {n}(&self) -> Result<u32, Error> {{ Ok({k}) }}",
    "$ ./build/bin/kvserve --model models/{n}.gguf --port {k}",
    "x = [i**2 for i in range({k}) if i % 3 == 0]  # {n}",
]


def english(r):
    n = r.randint(1, 20)
    words = [r.choice(WORDS) for _ in range(n)]
    if r.random() < 0.3:
        words = [w.upper() if r.random() < 0.3 else w.capitalize() for w in words]
    text = " ".join(words)
    if r.random() < 0.7:
        text += r.choice(".!?")
    if r.random() < 0.3:
        text = r.choice(["\"", "'", "(", " ", ""]) + text + r.choice(["\"", "'", ")", " ", ""])
    return text


def code(r):
    name = r.choice(["foo", "bar_baz", "tokenCount", "KV_CACHE", "x1", "parse_json", "self"])
    text = r.choice(CODE).format(n=name, k=r.randint(0, 100000))
    if r.random() < 0.3:
        text = text.replace("    ", "\t")
    return text


def scripts(r):
    name = r.choice(sorted(SCRIPTS))
    src = SCRIPTS[name]
    a = r.randrange(len(src))
    b = min(len(src), a + r.randint(1, 40))
    text = src[a:b]
    if r.random() < 0.3:
        text = english(r) + " " + text
    return text


def emoji(r):
    parts = []
    for _ in range(r.randint(1, 6)):
        roll = r.random()
        parts.append(r.choice(EMOJI) if roll < 0.6 else r.choice(WORDS) if roll < 0.8 else " ")
    return "".join(parts)


def whitespace(r):
    parts = []
    for _ in range(r.randint(1, 8)):
        parts.append(r.choice(WHITESPACE) * r.randint(1, 3) if r.random() < 0.6 else r.choice(WORDS))
    return "".join(parts)


def numbers(r):
    forms = [
        lambda: str(r.randint(0, 10 ** r.randint(1, 15))),
        lambda: f"{r.uniform(-1e6, 1e6):.{r.randint(0, 6)}f}",
        lambda: f"{r.randint(1, 999)},{r.randint(100, 999)},{r.randint(100, 999)}",
        lambda: f"{r.uniform(0, 10):.3e}",
        lambda: f"+1 ({r.randint(100, 999)}) {r.randint(100, 999)}-{r.randint(1000, 9999)}",
        lambda: f"v{r.randint(0, 9)}.{r.randint(0, 99)}.{r.randint(0, 999)}",
        lambda: "１２３４５" if r.random() < 0.5 else "٠١٢٣٤٥٦",
        lambda: f"x² + y³ = ½ of {r.randint(1, 99)}%",
        lambda: f"{r.randint(1, 31):02d}/{r.randint(1, 12):02d}/{r.randint(1900, 2100)}",
        lambda: "".join(r.choice("0123456789") for _ in range(r.randint(20, 60))),
    ]
    return " ".join(r.choice(forms)() for _ in range(r.randint(1, 4)))


def special_tokens(r):
    parts = []
    for _ in range(r.randint(1, 6)):
        roll = r.random()
        if roll < 0.4:
            parts.append(r.choice(SPECIALS))
        elif roll < 0.5:
            s = r.choice(SPECIALS)
            parts.append(s[: r.randint(1, len(s) - 1)])  # a prefix is plain text
        elif roll < 0.6:
            parts.append(r.choice(["system", "user", "assistant"]) + "\n")
        else:
            parts.append(english(r))
    return r.choice(["", " ", "\n"]).join(parts)


def random_unicode(r):
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F),
              (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF), (0x3040, 0x30FF),
              (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF),
              (0x10000, 0x1007F), (0x1D400, 0x1D4FF), (0x300, 0x36F)]
    out = []
    for _ in range(r.randint(1, 25)):
        lo, hi = r.choice(ranges)
        out.append(chr(r.randint(lo, hi)))
    return "".join(out)


def controls(r):
    return "".join(r.choice(["a", " ", "\x00", "\x01", "\x04", "\x1b", "\x7f", "b", "\x10"])
                   for _ in range(r.randint(1, 12)))


def long_text(r):
    parts = []
    while sum(len(p) for p in parts) < r.randint(2000, 4000):
        parts.append(r.choice([english, code, scripts, numbers, whitespace])(r))
    return "\n".join(parts)


CATEGORIES = [  # name, generator, count
    ("english", english, 400),
    ("code", code, 300),
    ("scripts", scripts, 350),
    ("emoji", emoji, 200),
    ("whitespace", whitespace, 250),
    ("numbers", numbers, 250),
    ("special_tokens", special_tokens, 200),
    ("random_unicode", random_unicode, 150),
    ("controls", controls, 40),
    ("long", long_text, 6),
]


def main():
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    for name, module in (("transformers", transformers), ("tokenizers", tokenizers)):
        if module.__version__ != PINNED[name]:
            sys.exit(f"need {name}=={PINNED[name]}, found {module.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(MODEL, os.path.join(tmp, "model.gguf"))
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
    r = random.Random(SEED)
    cases = []
    seen = set()
    for name, gen, count in CATEGORIES:
        made = 0
        while made < count:
            text = gen(r)
            if not text or text in seen:
                continue
            seen.add(text)
            ids = tok.encode(text, add_special_tokens=False)
            cases.append({"category": name, "text": text, "ids": ids})
            made += 1
    data = {
        "generator": "scripts/make_tokenizer_fixtures.py",
        "seed": SEED,
        "reference": dict(PINNED),
        "model": os.path.basename(MODEL),
        "add_special_tokens": False,
        "cases": cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, {os.path.getsize(OUT)} bytes -> {OUT}")


if __name__ == "__main__":
    main()
