#include "model/gguf_file.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "gguf_writer.hpp"
#include "model/dequantize.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

using testing_support::gguf_writer;

std::vector<std::uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

gguf_writer sample_writer() {
  gguf_writer w;
  w.add_string("general.architecture", "llama");
  w.add_u8("t.u8", 200);
  w.add_i8("t.i8", -5);
  w.add_u16("t.u16", 60000);
  w.add_i16("t.i16", -30000);
  w.add_u32("t.u32", 4000000000u);
  w.add_i32("t.i32", -2000000000);
  w.add_u64("t.u64", 1ull << 40);
  w.add_i64("t.i64", -(1ll << 40));
  w.add_f32("t.f32", 0.5f);
  w.add_f64("t.f64", -2.25);
  w.add_bool("t.bool", true);
  w.add_string("t.str", "héllo");
  w.add_string_array("t.strs", {"a", "", "ccc"});
  w.add_i32_array("t.ints", {1, -2, 3});
  w.add_f32_array("t.floats", {1.5f, -0.25f});
  w.add_tensor("a", {4, 2}, 0, f32_bytes({0, 1, 2, 3, 4, 5, 6, 7}));
  w.add_tensor("b", {3}, 0, f32_bytes({9, 8, 7}));
  return w;
}

TEST(GgufFile, ReadsMetadataOfEveryType) {
  auto f = gguf_file::parse(sample_writer().bytes());
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("t.u8"), 200);
  EXPECT_EQ(f->get_int("t.i8"), -5);
  EXPECT_EQ(f->get_int("t.u16"), 60000);
  EXPECT_EQ(f->get_int("t.i16"), -30000);
  EXPECT_EQ(f->get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f->get_int("t.i32"), -2000000000);
  EXPECT_EQ(f->get_int("t.u64"), 1ll << 40);
  EXPECT_EQ(f->get_int("t.i64"), -(1ll << 40));
  EXPECT_EQ(f->get_float("t.f32"), 0.5);
  EXPECT_EQ(f->get_float("t.f64"), -2.25);
  EXPECT_EQ(f->get_bool("t.bool"), true);
  EXPECT_EQ(f->get_string("t.str"), "héllo");
  EXPECT_EQ(f->find("t.u32")->type, gguf_value_type::kUint32);
  const gguf_value* strs = f->find("t.strs");
  ASSERT_NE(strs, nullptr);
  ASSERT_TRUE(strs->is_array());
  EXPECT_EQ(strs->element_type, gguf_value_type::kString);
  EXPECT_EQ(*strs->as_string_array(), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(*f->find("t.ints")->as_int_array(), (std::vector<std::int64_t>{1, -2, 3}));
  EXPECT_EQ(*f->find("t.floats")->as_float_array(), (std::vector<double>{1.5, -0.25}));
  EXPECT_EQ(f->find("missing"), nullptr);
  EXPECT_FALSE(f->get_int("t.str").has_value());
}

TEST(GgufFile, ReadsTensorInfosAndData) {
  auto f = gguf_file::parse(sample_writer().bytes());
  ASSERT_TRUE(f);
  ASSERT_EQ(f->tensors().size(), 2u);
  const gguf_tensor_info* a = f->find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dims, (std::vector<std::uint64_t>{4, 2}));
  EXPECT_EQ(a->num_elements, 8u);
  EXPECT_EQ(a->num_bytes, 32u);
  const gguf_tensor_info* b = f->find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->offset % f->alignment(), 0u);
  std::vector<float> out(3);
  ASSERT_TRUE(dequantize(b->type, f->tensor_bytes(*b), out));
  EXPECT_EQ(out, (std::vector<float>{9, 8, 7}));
}

TEST(GgufFile, EveryTruncationIsAnErrorNotACrash) {
  const std::vector<std::uint8_t> full = sample_writer().bytes();
  // The last tensor's padding is not needed: its data ends 4 bytes before the image does.
  const std::size_t needed = full.size() - 20;
  for (std::size_t n = 0; n < needed; ++n) {
    auto f = gguf_file::parse(std::span(full.data(), n));
    ASSERT_FALSE(f) << "prefix of " << n << " bytes accepted";
    EXPECT_EQ(f.error().code(), status_code::kCorruptData) << n << ": " << f.error().message();
  }
}

TEST(GgufFile, RandomByteFlipsNeverCrash) {
  const std::vector<std::uint8_t> full = sample_writer().bytes();
  std::uint64_t state = 12345;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::uint8_t> image = full;
    for (int k = 0; k < 3; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      image[(state >> 33) % image.size()] = static_cast<std::uint8_t>(state >> 20);
    }
    auto f = gguf_file::parse(image);
    if (f) {  // whatever was accepted must be internally consistent
      for (const auto& t : f->tensors()) EXPECT_EQ(f->tensor_bytes(t).size(), t.num_bytes);
    }
  }
}

status_code parse_code(const std::vector<std::uint8_t>& image) {
  auto f = gguf_file::parse(image);
  return f ? status_code::kOk : f.error().code();
}

TEST(GgufFile, RejectsBadHeaders) {
  std::vector<std::uint8_t> image = sample_writer().bytes();
  auto bad_magic = image;
  bad_magic[0] = 'X';
  EXPECT_EQ(parse_code(bad_magic), status_code::kCorruptData);
  EXPECT_EQ(parse_code(gguf_writer(1).bytes()), status_code::kUnsupported);
  EXPECT_EQ(parse_code(gguf_writer(4).bytes()), status_code::kUnsupported);
  EXPECT_EQ(parse_code(gguf_writer(2).bytes()), status_code::kOk);
  auto big_endian = gguf_writer(0x03000000).bytes();
  auto f = gguf_file::parse(big_endian);
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find("big-endian"), std::string::npos);
  // Implausible tensor count.
  auto many = image;
  const std::uint64_t huge = 1ull << 60;
  std::memcpy(many.data() + 8, &huge, 8);
  EXPECT_EQ(parse_code(many), status_code::kCorruptData);
}

TEST(GgufFile, RejectsCorruptMetadata) {
  gguf_writer bad_type;
  bad_type.add_raw("k", 13, {0, 0, 0, 0});
  EXPECT_EQ(parse_code(bad_type.bytes()), status_code::kCorruptData);
  gguf_writer bad_bool;
  bad_bool.add_raw("k", 7, {2});
  EXPECT_EQ(parse_code(bad_bool.bytes()), status_code::kCorruptData);
  gguf_writer dup;
  dup.add_u32("k", 1);
  dup.add_u32("k", 2);
  EXPECT_EQ(parse_code(dup.bytes()), status_code::kCorruptData);
  gguf_writer long_string;  // length field far beyond the file
  long_string.add_raw("k", 8, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0});
  EXPECT_EQ(parse_code(long_string.bytes()), status_code::kCorruptData);
  gguf_writer long_array;  // 2^40 uint32 elements
  long_array.add_raw("k", 9, {4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0});
  EXPECT_EQ(parse_code(long_array.bytes()), status_code::kCorruptData);
  gguf_writer bad_alignment;
  bad_alignment.add_u32("general.alignment", 24);
  EXPECT_EQ(parse_code(bad_alignment.bytes()), status_code::kCorruptData);
}

TEST(GgufFile, RejectsBadTensorInfos) {
  gguf_writer dup;
  dup.add_tensor("x", {2}, 0, f32_bytes({1, 2}));
  dup.add_tensor("x", {2}, 0, f32_bytes({1, 2}));
  EXPECT_EQ(parse_code(dup.bytes()), status_code::kCorruptData);
  gguf_writer five_dims;
  five_dims.add_tensor("x", {1, 1, 1, 1, 2}, 0, f32_bytes({1, 2}));
  EXPECT_EQ(parse_code(five_dims.bytes()), status_code::kCorruptData);
  gguf_writer zero_dim;
  zero_dim.add_tensor("x", {0}, 0, {});
  EXPECT_EQ(parse_code(zero_dim.bytes()), status_code::kCorruptData);
  gguf_writer unknown_type;
  unknown_type.add_tensor("x", {2}, 99, f32_bytes({1, 2}));
  EXPECT_EQ(parse_code(unknown_type.bytes()), status_code::kUnsupported);
  gguf_writer partial_block;  // Q8_0 rows must be multiples of 32
  partial_block.add_tensor("x", {16}, 8, std::vector<std::uint8_t>(34));
  EXPECT_EQ(parse_code(partial_block.bytes()), status_code::kCorruptData);
  gguf_writer overflow;  // element count overflows 64 bits
  overflow.add_tensor("x", {1ull << 40, 1ull << 40}, 0, {});
  EXPECT_EQ(parse_code(overflow.bytes()), status_code::kCorruptData);
  gguf_writer past_end;  // claims more data than the file holds
  past_end.add_tensor("x", {1024}, 0, f32_bytes({1, 2}));
  EXPECT_EQ(parse_code(past_end.bytes()), status_code::kCorruptData);
}

TEST(GgufFile, RejectsMisalignedOffset) {
  std::vector<std::uint8_t> image = sample_writer().bytes();
  // Find tensor "b"'s info: its offset field follows name, n_dims, dims and type.
  const std::string needle = std::string("\x01\x00\x00\x00\x00\x00\x00\x00", 8) + "b";
  auto it = std::search(image.begin(), image.end(), needle.begin(), needle.end());
  ASSERT_NE(it, image.end());
  const std::size_t offset_pos =
      static_cast<std::size_t>(it - image.begin()) + needle.size() + 4 + 8 + 4;
  image[offset_pos] += 4;
  EXPECT_EQ(parse_code(image), status_code::kCorruptData);
}

TEST(GgufFile, OpenReportsMissingFile) {
  auto f = gguf_file::open("/nonexistent/file.gguf");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), status_code::kNotFound);
}

TEST(GgufFile, ReadsTheDefaultModel) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  auto f = gguf_file::open(path);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 30);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(f->find("tokenizer.ggml.tokens")->as_string_array()->size(), 49152u);
  EXPECT_EQ(f->find("tokenizer.ggml.merges")->as_string_array()->size(), 48900u);
  EXPECT_EQ(f->tensors().size(), 272u);
  const gguf_tensor_info* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, static_cast<std::uint32_t>(ggml_type::kQ8_0));
  EXPECT_EQ(emb->dims, (std::vector<std::uint64_t>{576, 49152}));
  EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight")->type,
            static_cast<std::uint32_t>(ggml_type::kQ4_1));
}

}  // namespace
}  // namespace kvserve
