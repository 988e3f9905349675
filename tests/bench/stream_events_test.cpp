#include "bench/serve/stream_events.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/serve/request_recorder.hpp"

namespace kvserve::bench {
namespace {

using nlohmann::json;
using kind = stream_event::kind;

request_spec token_spec() {
  request_spec s;
  s.prompt_ids = {5, 6, 7};
  s.max_tokens = 4;
  s.ignore_eos = true;
  return s;
}

TEST(StreamEventsTest, WsStartFrameCarriesIdsAndRetention) {
  auto spec = token_spec();
  spec.retain_tokens = 2;
  spec.retention_priority = 90;
  json j = json::parse(ws_start_frame("r1", spec));
  EXPECT_EQ(j["type"], "start");
  EXPECT_EQ(j["id"], "r1");
  EXPECT_EQ(j["prompt_token_ids"], json({5, 6, 7}));
  EXPECT_EQ(j["max_tokens"], 4);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["retention"]["num_tokens"], 2);
  EXPECT_EQ(j["retention"]["priority"], 90);
  EXPECT_FALSE(j.contains("messages"));
}

TEST(StreamEventsTest, OpenAIBodiesStreamWithUsage) {
  auto spec = token_spec();
  json c = json::parse(openai_request_body(api_backend::kOpenAICompletions, spec));
  EXPECT_EQ(c["prompt"], json({5, 6, 7}));
  EXPECT_EQ(c["stream"], true);
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  EXPECT_FALSE(c.contains("model"));
  spec.messages = {{"system", "be brief"}, {"user", "hi"}};
  spec.model = "m";
  json chat = json::parse(openai_request_body(api_backend::kOpenAIChat, spec));
  EXPECT_EQ(chat["messages"][1]["content"], "hi");
  EXPECT_EQ(chat["model"], "m");
  EXPECT_FALSE(chat.contains("prompt"));
  EXPECT_STREQ(openai_path(api_backend::kOpenAIChat), "/v1/chat/completions");
}

TEST(StreamEventsTest, WsFramesDecode) {
  auto hello = parse_ws_frame(R"({"type":"hello","protocol":"kvserve.v1"})", "r1");
  EXPECT_EQ(hello.type, kind::kIgnored);
  auto acc = parse_ws_frame(
      R"({"type":"accepted","id":"r1","prompt_tokens":12,"cached_prompt_tokens":8})", "r1");
  EXPECT_EQ(acc.type, kind::kAccepted);
  EXPECT_EQ(acc.prompt_tokens, 12);
  EXPECT_EQ(acc.cached_prompt_tokens, 8);
  auto other = parse_ws_frame(R"({"type":"delta","id":"r2","text":"x","token_ids":[1]})", "r1");
  EXPECT_EQ(other.type, kind::kIgnored);
  auto delta = parse_ws_frame(R"({"type":"delta","id":"r1","text":"","token_ids":[4,5]})", "r1");
  EXPECT_EQ(delta.type, kind::kDelta);
  EXPECT_TRUE(delta.has_output);
  EXPECT_EQ(delta.token_ids, (std::vector<std::int32_t>{4, 5}));
  auto done = parse_ws_frame(
      R"({"type":"done","id":"r1","finish_reason":"length","usage":{"prompt_tokens":12,"completion_tokens":4,"cached_prompt_tokens":8}})",
      "r1");
  EXPECT_EQ(done.type, kind::kDone);
  EXPECT_EQ(done.completion_tokens, 4);
  EXPECT_EQ(done.finish_reason, "length");
  auto conn_err = parse_ws_frame(R"({"type":"error","code":"overloaded","message":"busy"})", "r1");
  EXPECT_EQ(conn_err.type, kind::kError);
  EXPECT_EQ(conn_err.error, "overloaded: busy");
  EXPECT_EQ(parse_ws_frame("not json", "r1").type, kind::kError);
}

TEST(StreamEventsTest, SseChatChunksDecode) {
  auto role = parse_sse_payload(
      R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})",
      api_backend::kOpenAIChat);
  EXPECT_EQ(role.type, kind::kDelta);
  EXPECT_FALSE(role.has_output);
  auto text = parse_sse_payload(
      R"({"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]})",
      api_backend::kOpenAIChat);
  EXPECT_TRUE(text.has_output);
  EXPECT_EQ(text.text, "Hi");
  auto usage = parse_sse_payload(
      R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}})",
      api_backend::kOpenAIChat);
  EXPECT_EQ(usage.type, kind::kIgnored);
  EXPECT_EQ(usage.prompt_tokens, 9);
  EXPECT_EQ(usage.completion_tokens, 3);
  EXPECT_EQ(usage.cached_prompt_tokens, 4);
  EXPECT_EQ(parse_sse_payload("[DONE]", api_backend::kOpenAIChat).type, kind::kDone);
  auto err = parse_sse_payload(R"({"error":{"code":"overloaded","message":"queue full"}})",
                               api_backend::kOpenAIChat);
  EXPECT_EQ(err.type, kind::kError);
  EXPECT_EQ(err.error, "overloaded: queue full");
}

TEST(StreamEventsTest, SseCompletionChunksDecode) {
  auto t = parse_sse_payload(R"({"choices":[{"index":0,"text":" the","finish_reason":null}]})",
                             api_backend::kOpenAICompletions);
  EXPECT_TRUE(t.has_output);
  EXPECT_EQ(t.text, " the");
}

TEST(StreamEventsTest, SseSplitterHandlesPartialEventsAndCrlf) {
  sse_splitter s;
  EXPECT_TRUE(s.feed("data: {\"a\":").empty());
  auto first = s.feed("1}\n\ndata: [DO");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0], "{\"a\":1}");
  auto second = s.feed("NE]\r\n\r\n: comment\n\nevent: x\ndata: a\ndata: b\n\n");
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0], "[DONE]");
  EXPECT_EQ(second[1], "a\nb");
}

TEST(RequestRecorderTest, TimesAndCountsOfAWsStream) {
  request_recorder rec(/*sent_at=*/100.0, /*run_origin=*/90.0);
  EXPECT_FALSE(rec.on_event(
      parse_ws_frame(R"({"type":"accepted","id":"a","prompt_tokens":10,"cached_prompt_tokens":4})",
                     "a"),
      100.2));
  rec.on_event(parse_ws_frame(R"({"type":"delta","id":"a","text":"x","token_ids":[1]})", "a"),
               100.5);
  rec.on_event(parse_ws_frame(R"({"type":"delta","id":"a","text":"","token_ids":[2,3]})", "a"),
               100.7);
  rec.on_event(parse_ws_frame(R"({"type":"delta","id":"a","text":"y","token_ids":[4]})", "a"),
               101.0);
  EXPECT_TRUE(rec.on_event(
      parse_ws_frame(
          R"({"type":"done","id":"a","usage":{"prompt_tokens":10,"completion_tokens":4,"cached_prompt_tokens":4}})",
          "a"),
      101.1));
  auto o = rec.take();
  EXPECT_TRUE(o.success);
  EXPECT_DOUBLE_EQ(o.start_s, 10.0);
  EXPECT_NEAR(o.ttft_s, 0.5, 1e-9);
  EXPECT_NEAR(o.e2e_s, 1.1, 1e-9);
  ASSERT_EQ(o.itl_s.size(), 2u);
  EXPECT_NEAR(o.itl_s[0], 0.2, 1e-9);
  EXPECT_NEAR(o.itl_s[1], 0.3, 1e-9);
  EXPECT_EQ(o.prompt_tokens, 10);
  EXPECT_EQ(o.cached_prompt_tokens, 4);
  EXPECT_EQ(o.output_tokens, 4);
  EXPECT_TRUE(o.usage_reported);
  EXPECT_EQ(o.output_ids, (std::vector<std::int32_t>{1, 2, 3, 4}));
  EXPECT_NEAR(o.tpot_s(), 0.6 / 3, 1e-9);
}

TEST(RequestRecorderTest, CountsIdsWithoutUsageAndFailsOnError) {
  request_recorder rec(0.0, 0.0);
  rec.on_event(parse_ws_frame(R"({"type":"delta","id":"a","token_ids":[1,2]})", "a"), 1.0);
  rec.on_event(parse_ws_frame(R"({"type":"done","id":"a"})", "a"), 2.0);
  auto o = rec.take();
  EXPECT_TRUE(o.success);
  EXPECT_FALSE(o.usage_reported);
  EXPECT_EQ(o.output_tokens, 2);

  request_recorder bad(0.0, 0.0);
  EXPECT_TRUE(bad.on_event(
      parse_ws_frame(R"({"type":"error","id":"a","code":"invalid_argument","message":"m"})", "a"),
      0.5));
  bad.on_event(parse_ws_frame(R"({"type":"delta","id":"a","token_ids":[1]})", "a"), 0.6);
  auto b = bad.take();
  EXPECT_FALSE(b.success);
  EXPECT_EQ(b.error, "invalid_argument: m");
  EXPECT_TRUE(b.itl_s.empty());

  request_recorder empty(0.0, 0.0);
  empty.on_event(parse_sse_payload("[DONE]", api_backend::kOpenAIChat), 1.0);
  EXPECT_FALSE(empty.take().success);  // no output at all
}

}  // namespace
}  // namespace kvserve::bench
