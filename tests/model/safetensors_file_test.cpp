#include "model/safetensors_file.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace kvserve {
namespace {

std::vector<std::uint8_t> image(const std::string& header, std::size_t data_bytes,
                                const std::vector<float>& data = {}) {
  std::vector<std::uint8_t> out(8 + header.size() + data_bytes);
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size() * 4);
  return out;
}

status_code code_of(const std::vector<std::uint8_t>& img) {
  auto f = safetensors_file::parse(img);
  return f ? status_code::kOk : f.error().code();
}

TEST(SafetensorsFile, ReadsTensors) {
  const std::string h =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}})";
  auto img = image(h, 20, {1, 2, 3, 4, 0});
  // b = bf16 {1.0, -2.0}
  const std::uint8_t bf[4] = {0x80, 0x3F, 0x00, 0xC0};
  std::memcpy(img.data() + 8 + h.size() + 16, bf, 4);
  auto f = safetensors_file::parse(img);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 2u);
  auto a = f->read_f32(*f->find("a"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(a->data, (std::vector<float>{1, 2, 3, 4}));
  auto b = f->read_f32(*f->find("b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->data, (std::vector<float>{1, -2}));
}

TEST(SafetensorsFile, RejectsCorruptHeaders) {
  EXPECT_EQ(code_of({1, 2, 3}), status_code::kCorruptData);
  auto huge = image("{}", 0);
  const std::uint64_t big = 1ull << 40;
  std::memcpy(huge.data(), &big, 8);
  EXPECT_EQ(code_of(huge), status_code::kCorruptData);
  EXPECT_EQ(code_of(image("{not json", 0)), status_code::kCorruptData);
  EXPECT_EQ(code_of(image("[1,2]", 0)), status_code::kCorruptData);
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[2]}})", 8)), status_code::kCorruptData);
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", 8)),
            status_code::kCorruptData);
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", 8)),
            status_code::kCorruptData);
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
            status_code::kCorruptData);
}

TEST(SafetensorsFile, RejectsBadOffsets) {
  // Past the end of the file.
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
            status_code::kCorruptData);
  // Range does not match dtype x shape.
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16)),
            status_code::kCorruptData);
  // Reversed range.
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 16)),
            status_code::kCorruptData);
  // Overlapping tensors.
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          16)),
            status_code::kCorruptData);
  // Shape product overflow.
  EXPECT_EQ(code_of(image(R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],)"
                          R"("data_offsets":[0,8]}})",
                          8)),
            status_code::kCorruptData);
}

TEST(SafetensorsFile, EveryTruncationIsAnError) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const auto full = image(h, 16, {1, 2, 3, 4});
  ASSERT_EQ(code_of(full), status_code::kOk);
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_NE(code_of(std::vector<std::uint8_t>(full.begin(), full.begin() + static_cast<long>(n))),
              status_code::kOk)
        << n;
  }
}

TEST(SafetensorsFile, UnsupportedDtypeIsNamedOnRead) {
  auto f = safetensors_file::parse(
      image(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8));
  ASSERT_TRUE(f);
  auto t = f->read_f32(*f->find("a"));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), status_code::kUnsupported);
  EXPECT_NE(t.error().message().find("I64"), std::string::npos);
}

}  // namespace
}  // namespace kvserve
