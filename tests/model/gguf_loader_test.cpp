#include "model/gguf_loader.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

#include "gguf_writer.hpp"
#include "model/dequantize.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

using testing_support::gguf_writer;

/// llama.cpp's converter permutation of Q/K rows (its `permute`: reshape to
/// [heads, 2, d/2, in], swap axes 1 and 2), written out independently of the loader.
std::vector<float> converter_permute(const std::vector<float>& w, int rows, int cols, int heads) {
  const int d = rows / heads;
  std::vector<float> out(w.size());
  for (int h = 0; h < heads; ++h) {
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < d / 2; ++i) {
        // Source index [h, half, i] lands at [h, i, half] of the swapped view.
        const int src_row = h * d + half * (d / 2) + i;
        const int dst_row = h * d + i * 2 + half;
        for (int c = 0; c < cols; ++c) out[dst_row * cols + c] = w[src_row * cols + c];
      }
    }
  }
  return out;
}

/// Values that every type below stores exactly: multiples of 1/8 in [-1, 0.875].
std::vector<float> exact_values(std::size_t n, int salt) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>((i * 7 + salt * 13) % 16) / 8.0f - 1.0f;
  return v;
}

std::vector<std::uint8_t> as_f32(const std::vector<float>& v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
std::vector<std::uint8_t> as_f16(const std::vector<float>& v) {  // exact for these values
  std::vector<std::uint8_t> b;
  for (float x : v) {
    std::uint16_t h = 0;
    if (x != 0.0f) {
      int e = 0;
      const float m = std::frexp(std::fabs(x), &e);  // x = m * 2^e, m in [0.5, 1)
      const auto mant = static_cast<std::uint16_t>(std::lround((m * 2.0f - 1.0f) * 1024.0f));
      h = static_cast<std::uint16_t>(((e - 1 + 15) << 10) | mant);
      if (x < 0) h |= 0x8000;
    }
    b.push_back(static_cast<std::uint8_t>(h & 0xFF));
    b.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  return b;
}
std::vector<std::uint8_t> as_bf16(const std::vector<float>& v) {
  std::vector<std::uint8_t> b;
  for (float x : v) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &x, 4);
    b.push_back(static_cast<std::uint8_t>((bits >> 16) & 0xFF));
    b.push_back(static_cast<std::uint8_t>(bits >> 24));
  }
  return b;
}
/// Q8_0 with d = 1/8: q = 8x.
std::vector<std::uint8_t> as_q8_0(const std::vector<float>& v) {
  std::vector<std::uint8_t> b;
  for (std::size_t i = 0; i < v.size(); i += 32) {
    b.push_back(0x00);
    b.push_back(0x30);  // fp16 0.125
    for (std::size_t j = 0; j < 32; ++j) {
      b.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(std::lround(v[i + j] * 8))));
    }
  }
  return b;
}
/// Q4_0 with d = 1/8: q = 8x + 8 in [0, 15].
std::vector<std::uint8_t> as_q4_0(const std::vector<float>& v) {
  std::vector<std::uint8_t> b;
  for (std::size_t i = 0; i < v.size(); i += 32) {
    b.push_back(0x00);
    b.push_back(0x30);
    for (std::size_t j = 0; j < 16; ++j) {
      const auto lo = static_cast<std::uint8_t>(std::lround(v[i + j] * 8 + 8));
      const auto hi = static_cast<std::uint8_t>(std::lround(v[i + j + 16] * 8 + 8));
      b.push_back(static_cast<std::uint8_t>(lo | (hi << 4)));
    }
  }
  return b;
}
/// Q4_1 with d = 1/8, m = -1: q = 8(x + 1).
std::vector<std::uint8_t> as_q4_1(const std::vector<float>& v) {
  std::vector<std::uint8_t> b;
  for (std::size_t i = 0; i < v.size(); i += 32) {
    b.insert(b.end(), {0x00, 0x30, 0x00, 0xBC});
    for (std::size_t j = 0; j < 16; ++j) {
      const auto lo = static_cast<std::uint8_t>(std::lround((v[i + j] + 1) * 8));
      const auto hi = static_cast<std::uint8_t>(std::lround((v[i + j + 16] + 1) * 8));
      b.push_back(static_cast<std::uint8_t>(lo | (hi << 4)));
    }
  }
  return b;
}

struct tiny_model {
  int hidden = 32, heads = 4, kv_heads = 2, head_dim = 8, inter = 64, vocab = 40;
  std::string arch = "llama";
  bool bias = false;
  bool tied = false;
  bool q_as_q5_k = false;  ///< write attn_q as Q5_K, a type kvserve does not read
  // HF-layout values of every tensor, to compare with what the loader returns.
  std::map<std::string, std::vector<float>> hf;

  gguf_writer write() {
    gguf_writer w;
    const std::string a = arch;
    w.add_string("general.architecture", a);
    w.add_string("general.name", "tiny");
    w.add_u32(a + ".embedding_length", static_cast<std::uint32_t>(hidden));
    w.add_u32(a + ".block_count", 1);
    w.add_u32(a + ".feed_forward_length", static_cast<std::uint32_t>(inter));
    w.add_u32(a + ".attention.head_count", static_cast<std::uint32_t>(heads));
    w.add_u32(a + ".attention.head_count_kv", static_cast<std::uint32_t>(kv_heads));
    w.add_u32(a + ".context_length", 4096);
    w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
    w.add_f32(a + ".rope.freq_base", 500000.0f);
    w.add_u32(a + ".rope.dimension_count", static_cast<std::uint32_t>(head_dim));
    const int q = heads * head_dim, kv = kv_heads * head_dim;
    const bool permute = arch == "llama";
    auto add = [&](const std::string& name, int rows, int cols, int salt, auto encode,
                   std::uint32_t type, int permute_heads) {
      std::vector<float> v = exact_values(static_cast<std::size_t>(rows) * cols, salt);
      hf[name] = v;
      if (permute && permute_heads > 0) v = converter_permute(v, rows, cols, permute_heads);
      std::vector<std::uint64_t> dims =
          cols == 1 ? std::vector<std::uint64_t>{std::uint64_t(rows)}
                    : std::vector<std::uint64_t>{std::uint64_t(cols), std::uint64_t(rows)};
      if (q_as_q5_k && name == "blk.0.attn_q.weight") {
        w.add_tensor(name, dims, 13, std::vector<std::uint8_t>(v.size() / 256 * 176));
        return;
      }
      w.add_tensor(name, dims, type, encode(v));
    };
    add("token_embd.weight", vocab, hidden, 1, as_f16, 1, 0);
    add("output_norm.weight", hidden, 1, 2, as_f32, 0, 0);
    if (!tied) add("output.weight", vocab, hidden, 3, as_bf16, 30, 0);
    add("blk.0.attn_norm.weight", hidden, 1, 4, as_f32, 0, 0);
    add("blk.0.attn_q.weight", q, hidden, 5, as_q8_0, 8, heads);
    add("blk.0.attn_k.weight", kv, hidden, 6, as_q4_0, 2, kv_heads);
    add("blk.0.attn_v.weight", kv, hidden, 7, as_q4_1, 3, 0);
    if (bias) {
      add("blk.0.attn_q.bias", q, 1, 8, as_f32, 0, heads);
      add("blk.0.attn_k.bias", kv, 1, 9, as_f32, 0, kv_heads);
      add("blk.0.attn_v.bias", kv, 1, 10, as_f32, 0, 0);
    }
    add("blk.0.attn_output.weight", hidden, q, 11, as_f16, 1, 0);
    add("blk.0.ffn_norm.weight", hidden, 1, 12, as_f32, 0, 0);
    add("blk.0.ffn_gate.weight", inter, hidden, 13, as_q8_0, 8, 0);
    add("blk.0.ffn_up.weight", inter, hidden, 14, as_bf16, 30, 0);
    add("blk.0.ffn_down.weight", hidden, inter, 15, as_q4_1, 3, 0);
    return w;
  }
};

result<model_weights> load(const gguf_writer& w, model_config* config_out = nullptr) {
  auto f = gguf_file::parse(w.bytes(), "tiny.gguf");
  if (!f) return f.error();
  auto c = model_config_from_gguf(*f);
  if (!c) return c.error();
  if (config_out) *config_out = *c;
  return load_gguf_weights(*f, *c);
}

void expect_layer_matches(const model_weights& w, tiny_model& m) {
  const layer_weights& l = w.layers.at(0);
  EXPECT_EQ(w.token_embedding.data, m.hf["token_embd.weight"]);
  EXPECT_EQ(w.final_norm.data, m.hf["output_norm.weight"]);
  if (!m.tied) {
    EXPECT_EQ(w.lm_head.data, m.hf["output.weight"]);
  }
  EXPECT_EQ(l.attn_norm.data, m.hf["blk.0.attn_norm.weight"]);
  EXPECT_EQ(l.wq.data, m.hf["blk.0.attn_q.weight"]);
  EXPECT_EQ(l.wk.data, m.hf["blk.0.attn_k.weight"]);
  EXPECT_EQ(l.wv.data, m.hf["blk.0.attn_v.weight"]);
  EXPECT_EQ(l.wo.data, m.hf["blk.0.attn_output.weight"]);
  EXPECT_EQ(l.ffn_norm.data, m.hf["blk.0.ffn_norm.weight"]);
  EXPECT_EQ(l.w_gate.data, m.hf["blk.0.ffn_gate.weight"]);
  EXPECT_EQ(l.w_up.data, m.hf["blk.0.ffn_up.weight"]);
  EXPECT_EQ(l.w_down.data, m.hf["blk.0.ffn_down.weight"]);
  if (m.bias) {
    EXPECT_EQ(l.bq.data, m.hf["blk.0.attn_q.bias"]);
    EXPECT_EQ(l.bk.data, m.hf["blk.0.attn_k.bias"]);
    EXPECT_EQ(l.bv.data, m.hf["blk.0.attn_v.bias"]);
  }
}

TEST(GgufLoader, LlamaOfEveryTensorTypeLoadsInHfLayout) {
  tiny_model m;
  model_config c;
  auto w = load(m.write(), &c);
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.name, "tiny");
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.vocab_size, 40);
  EXPECT_EQ(c.num_layers, 1);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(w->layers[0].wq.shape, (std::vector<std::int64_t>{32, 32}));
  EXPECT_EQ(w->layers[0].wk.shape, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(w->layers[0].w_down.shape, (std::vector<std::int64_t>{32, 64}));
  expect_layer_matches(*w, m);
}

TEST(GgufLoader, Qwen2KeepsRowOrderAndReadsBiases) {
  tiny_model m;
  m.arch = "qwen2";
  m.bias = true;
  m.tied = true;
  model_config c;
  auto w = load(m.write(), &c);
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(w->lm_head.empty());
  expect_layer_matches(*w, m);
}

TEST(GgufLoader, LlamaBiasesAreUnpermutedToo) {
  tiny_model m;
  m.bias = true;
  auto w = load(m.write());
  ASSERT_TRUE(w) << w.error().message();
  expect_layer_matches(*w, m);
}

TEST(GgufLoader, UnpermuteInvertsTheConverter) {
  tensor_f32 t;
  t.shape = {12, 3};
  std::vector<float> hf(36);
  for (std::size_t i = 0; i < hf.size(); ++i) hf[i] = static_cast<float>(i);
  t.data = converter_permute(hf, 12, 3, 3);
  EXPECT_NE(t.data, hf);
  unpermute_rope_rows(t, 3);
  EXPECT_EQ(t.data, hf);
}

TEST(GgufLoader, RejectsUnsupportedArchitecture) {
  gguf_writer w;
  w.add_string("general.architecture", "gpt2");
  auto f = gguf_file::parse(w.bytes(), "x.gguf");
  ASSERT_TRUE(f);
  auto c = model_config_from_gguf(*f);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), status_code::kUnsupported);
  EXPECT_NE(c.error().message().find("gpt2"), std::string::npos);
}

TEST(GgufLoader, RejectsUnsupportedTensorTypeByName) {
  tiny_model m;  // rows of 256, so that a K-quant fits
  m.hidden = 256;
  m.head_dim = 64;
  m.q_as_q5_k = true;
  auto w = load(m.write());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), status_code::kUnsupported);
  EXPECT_NE(w.error().message().find("Q5_K"), std::string::npos) << w.error().message();
  EXPECT_NE(w.error().message().find("blk.0.attn_q.weight"), std::string::npos);
}

TEST(GgufLoader, MissingOrMisshapenTensorIsCorrupt) {
  tiny_model wrong;
  wrong.inter = 32;  // ffn tensors now [32, 32] while the metadata below claims 64
  gguf_writer w = wrong.write();
  auto f = gguf_file::parse(w.bytes(), "w.gguf");
  ASSERT_TRUE(f);
  auto c = model_config_from_gguf(*f);
  ASSERT_TRUE(c);
  c->intermediate_size = 64;
  auto r = load_gguf_weights(*f, *c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kCorruptData);
  EXPECT_NE(r.error().message().find("shape"), std::string::npos);
  c->intermediate_size = 32;
  c->num_layers = 2;  // blk.1.* does not exist
  auto missing = load_gguf_weights(*f, *c);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("missing tensor"), std::string::npos);
}

TEST(GgufLoader, RopeScalingFromMetadataAndRopeFreqs) {
  tiny_model m;
  m.head_dim = 64;
  m.hidden = 256;
  m.heads = 4;
  m.kv_heads = 2;
  m.inter = 64;
  gguf_writer w = m.write();
  // Llama 3.1's frequency divisors for factor 8, low 1, high 4, original context 8192.
  std::vector<float> divisors;
  for (int i = 0; i < 32; ++i) {
    const double freq = std::pow(500000.0, -2.0 * i / 64);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < 8192 / 4.0) {
      divisors.push_back(1.0f);
    } else if (wavelen > 8192 / 1.0) {
      divisors.push_back(8.0f);
    } else {
      const double smooth = (8192 / wavelen - 1) / (4 - 1);
      divisors.push_back(static_cast<float>(1.0 / ((1 - smooth) / 8 + smooth)));
    }
  }
  w.add_tensor("rope_freqs.weight", {32}, 0, as_f32(divisors));
  auto f = gguf_file::parse(w.bytes(), "r.gguf");
  ASSERT_TRUE(f);
  auto c = model_config_from_gguf(*f);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->rope_scaling.type, rope_scaling_config::kind::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);

  tiny_model lin;
  gguf_writer wl = lin.write();
  wl.add_string("llama.rope.scaling.type", "linear");
  wl.add_f32("llama.rope.scaling.factor", 2.0f);
  auto fl = gguf_file::parse(wl.bytes(), "l.gguf");
  ASSERT_TRUE(fl);
  auto cl = model_config_from_gguf(*fl);
  ASSERT_TRUE(cl);
  EXPECT_EQ(cl->rope_scaling.type, rope_scaling_config::kind::kLinear);
  EXPECT_FLOAT_EQ(cl->rope_scaling.factor, 2.0f);

  tiny_model yarn;
  gguf_writer wy = yarn.write();
  wy.add_string("llama.rope.scaling.type", "yarn");
  auto fy = gguf_file::parse(wy.bytes(), "y.gguf");
  ASSERT_TRUE(fy);
  auto cy = model_config_from_gguf(*fy);
  ASSERT_FALSE(cy);
  EXPECT_EQ(cy.error().code(), status_code::kUnsupported);
}

TEST(GgufLoader, TokenizerOnlyForByteLevelBpe) {
  gguf_writer w;
  w.add_string("tokenizer.ggml.model", "llama");
  auto f = gguf_file::parse(w.bytes(), "t.gguf");
  ASSERT_TRUE(f);
  auto spec = tokenizer_spec_from_gguf(*f);
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code(), status_code::kUnsupported);
}

// The default model against transformers' own reading of the same GGUF (dequantised by the
// gguf package, Q/K un-permuted): scripts/make_gguf_weight_probes.py.
TEST(GgufLoader, DefaultModelMatchesTransformers) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/smollm2_weight_probes.json");
  ASSERT_TRUE(in) << "missing tests/data/smollm2_weight_probes.json";
  const nlohmann::json probes = nlohmann::json::parse(in);
  auto f = gguf_file::open(path);
  ASSERT_TRUE(f) << f.error().message();
  auto c = model_config_from_gguf(*f);
  ASSERT_TRUE(c);
  auto w = load_gguf_weights(*f, *c);
  ASSERT_TRUE(w) << w.error().message();
  auto field = [&](const std::string& name) -> const tensor_f32* {
    if (name == "token_embedding") return &w->token_embedding;
    if (name == "final_norm") return &w->final_norm;
    const std::size_t dot = name.find('.', 7);
    const auto& l = w->layers.at(std::stoul(name.substr(7, dot - 7)));
    const std::string member = name.substr(dot + 1);
    if (member == "wq") return &l.wq;
    if (member == "wk") return &l.wk;
    if (member == "wv") return &l.wv;
    if (member == "wo") return &l.wo;
    if (member == "w_gate") return &l.w_gate;
    if (member == "w_up") return &l.w_up;
    if (member == "w_down") return &l.w_down;
    if (member == "attn_norm") return &l.attn_norm;
    if (member == "ffn_norm") return &l.ffn_norm;
    return nullptr;
  };
  int checked = 0;
  for (const auto& p : probes.at("probes")) {
    const tensor_f32* t = field(p.at("field").get<std::string>());
    ASSERT_NE(t, nullptr) << p.at("field");
    EXPECT_EQ(t->shape, p.at("shape").get<std::vector<std::int64_t>>()) << p.at("field");
    const std::int64_t cols = t->shape.size() > 1 ? t->shape[1] : 1;
    for (const auto& s : p.at("samples")) {
      const auto i = s[0].get<std::int64_t>(), j = s[1].get<std::int64_t>();
      const float expected = s[2].get<float>();
      EXPECT_NEAR(t->data[static_cast<std::size_t>(i * cols + j)], expected,
                  1e-6f * std::max(1.0f, std::fabs(expected)))
          << p.at("field") << " [" << i << ", " << j << "]";
    }
    const auto sums = p.at("row_sums").get<std::vector<double>>();
    for (std::size_t r = 0; r < sums.size(); ++r) {
      double sum = 0;
      for (std::int64_t k = 0; k < cols; ++k)
        sum += t->data[r * static_cast<std::size_t>(cols) + static_cast<std::size_t>(k)];
      EXPECT_NEAR(sum, sums[r], 1e-4 * std::max(1.0, std::fabs(sums[r])))
          << p.at("field") << " row " << r;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 13);
}

}  // namespace
}  // namespace kvserve
