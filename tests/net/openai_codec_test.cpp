// JSON codecs: OpenAI responses (bodies and SSE chunks, usage, logprobs, echo) and the
// WebSocket server messages, built from scripted engine events.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "net/openai_codec.hpp"
#include "net/ws_protocol.hpp"

namespace kvserve::net {
namespace {

using nlohmann::json;

text_codec letter_codec() {
  // Token i is the letter 'a' + i; enough to check where token strings go.
  text_codec c;
  c.token_text = [](std::int32_t id) { return std::string(1, static_cast<char>('a' + id % 26)); };
  c.encode = [](const std::string& text, bool) {
    std::vector<std::int32_t> ids;
    for (char ch : text) ids.push_back(ch - 'a');
    return ids;
  };
  c.decode = [](const std::vector<std::int32_t>& ids) {
    std::string s;
    for (auto id : ids) s += static_cast<char>('a' + id);
    return s;
  };
  return c;
}

token_event tok(std::string text, std::int32_t id, bool with_logprobs) {
  token_event t{std::move(text), {id}, {}};
  if (with_logprobs) t.logprobs.push_back({{id, -0.25f}, {{id, -0.25f}, {id + 1, -2.0f}}});
  return t;
}

finished_event fin(const char* reason, int prompt, int completion, int cached) {
  finished_event f;
  f.finish_reason = reason;
  f.usage = {prompt, completion, cached};
  return f;
}

std::vector<json> sse_payloads(const std::string& text, bool* saw_done) {
  std::vector<json> out;
  std::size_t pos = 0;
  while ((pos = text.find("data: ", pos)) != std::string::npos) {
    auto end = text.find("\n\n", pos);
    std::string payload = text.substr(pos + 6, end - pos - 6);
    if (payload == "[DONE]") {
      *saw_done = true;
    } else {
      out.push_back(json::parse(payload));
    }
    pos = end;
  }
  return out;
}

TEST(openai_codec, completion_body_with_usage_and_logprobs) {
  auto parsed =
      parse_openai_request(openai_endpoint::kCompletions,
                           R"({"prompt":"abc","max_tokens":2,"logprobs":1})", {}, 100, "m");
  ASSERT_TRUE(parsed.ok());
  text_codec codec = letter_codec();
  openai_encoder enc(*parsed.value, codec, "m", "cmpl-1", 42);
  EXPECT_EQ(enc.on_event(accepted_event{3, 2}), "");
  enc.on_event(tok("b", 1, true));
  enc.on_event(tok("c", 2, true));
  enc.on_event(fin("length", 3, 2, 2));
  ASSERT_TRUE(enc.finished());
  EXPECT_EQ(enc.http_status(), 200);
  json body = json::parse(enc.body());
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "bc");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(body["usage"]["completion_tokens"], 2);
  EXPECT_EQ(body["usage"]["total_tokens"], 5);
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  const json& lp = body["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"b", "c"}));
  EXPECT_EQ(lp["token_logprobs"][0], -0.25);
  EXPECT_EQ(lp["text_offset"], json({0, 1}));
  EXPECT_EQ(lp["top_logprobs"][0]["c"], -2.0);
}

TEST(openai_codec, echo_puts_the_prompt_and_its_logprobs_first) {
  auto parsed = parse_openai_request(openai_endpoint::kCompletions,
                                     R"({"prompt":"abc","max_tokens":1,"logprobs":0,"echo":true})",
                                     {}, 100, "m");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.value->request.prompt_logprobs, 0);
  text_codec codec = letter_codec();
  openai_encoder enc(*parsed.value, codec, "m", "cmpl-2", 1);
  enc.on_event(accepted_event{3, 0});
  enc.on_event(tok("d", 3, true));
  finished_event f = fin("length", 3, 1, 0);
  f.prompt_logprobs = {std::nullopt, position_logprobs{{1, -1.5f}, {}},
                       position_logprobs{{2, -0.5f}, {}}};
  enc.on_event(f);
  json body = json::parse(enc.body());
  EXPECT_EQ(body["choices"][0]["text"], "abcd");
  const json& lp = body["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"a", "b", "c", "d"}));
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(lp["token_logprobs"][1], -1.5);
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["text_offset"], json({0, 1, 2, 3}));
}

TEST(openai_codec, chat_stream_chunks_role_content_finish_usage_done) {
  auto parsed = parse_openai_request(openai_endpoint::kChatCompletions,
                                     R"({"messages":[{"role":"user","content":"hi"}],"stream":true,
          "stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":1})",
                                     {}, 100, "m");
  ASSERT_TRUE(parsed.ok());
  text_codec codec = letter_codec();
  openai_encoder enc(*parsed.value, codec, "m", "chatcmpl-1", 1);
  std::string out = enc.on_event(accepted_event{5, 0});
  out += enc.on_event(tok("he", 7, true));
  out += enc.on_event(tok("", 8, false));  // held back text: nothing to send
  out += enc.on_event(fin("stop", 5, 2, 0));
  bool done = false;
  auto chunks = sse_payloads(out, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[1]["object"], "chat.completion.chunk");
  EXPECT_EQ(chunks[1]["choices"][0]["delta"]["content"], "he");
  const json& content = chunks[1]["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(content[0]["token"], "h");
  EXPECT_EQ(content[0]["bytes"], json({'h'}));
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(chunks[2]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(chunks[3]["choices"].empty());
  EXPECT_EQ(chunks[3]["usage"]["total_tokens"], 7);
}

TEST(openai_codec, an_error_after_acceptance_ends_the_stream_with_an_error_event) {
  auto parsed = parse_openai_request(openai_endpoint::kCompletions,
                                     R"({"prompt":"x","stream":true})", {}, 100, "m");
  ASSERT_TRUE(parsed.ok());
  text_codec codec = letter_codec();
  openai_encoder enc(*parsed.value, codec, "m", "cmpl-3", 1);
  std::string out = enc.on_event(error_event{{status_code::kInternal, "backend failed"}});
  bool done = false;
  auto chunks = sse_payloads(out, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0]["error"]["code"], "internal");
  EXPECT_EQ(enc.http_status(), 500);
}

TEST(openai_codec, overload_maps_to_429) {
  auto err = from_status({status_code::kOverloaded, "queue full"});
  EXPECT_EQ(err.http_status, 429);
  EXPECT_EQ(err.code, "overloaded");
  json body = json::parse(openai_error_body(err));
  EXPECT_EQ(body["error"]["type"], "rate_limit_error");
}

TEST(openai_codec, tokenize_and_detokenize_have_vllm_shapes) {
  text_codec codec = letter_codec();
  auto t = handle_tokenize(R"({"prompt":"abc","return_token_strs":true})", codec, 64);
  ASSERT_EQ(t.http_status, 200);
  json j = json::parse(t.body);
  EXPECT_EQ(j["count"], 3);
  EXPECT_EQ(j["max_model_len"], 64);
  EXPECT_EQ(j["tokens"], json({0, 1, 2}));
  EXPECT_EQ(j["token_strs"], json({"a", "b", "c"}));
  auto d = handle_detokenize(R"({"tokens":[2,1,0]})", codec, 26);
  ASSERT_EQ(d.http_status, 200);
  EXPECT_EQ(json::parse(d.body)["prompt"], "cba");
  EXPECT_EQ(handle_detokenize(R"({"tokens":[99]})", codec, 26).http_status, 400);
  EXPECT_EQ(
      handle_tokenize(R"({"messages":[{"role":"user","content":"x"}]})", codec, 64).http_status,
      400);  // no chat renderer configured
}

TEST(ws_codec, server_messages) {
  json acc = json::parse(encode_ws_accepted("a", {10, 8}));
  EXPECT_EQ(acc["type"], "accepted");
  EXPECT_EQ(acc["cached_prompt_tokens"], 8);
  json delta = json::parse(
      encode_ws_delta("a", tok("x", 4, true), [](std::int32_t) { return std::string("T"); }));
  EXPECT_EQ(delta["text"], "x");
  EXPECT_EQ(delta["token_ids"], json({4}));
  EXPECT_EQ(delta["logprobs"][0]["token"], "T");
  EXPECT_EQ(delta["logprobs"][0]["top"].size(), 2u);
  finished_event f = fin("stop", 10, 3, 8);
  f.time_to_first_token_seconds = 0.25;
  f.inter_token_latencies_seconds = {0.01, 0.02};
  f.stop_reason = "\n";
  json done = json::parse(encode_ws_done("a", f));
  EXPECT_EQ(done["finish_reason"], "stop");
  EXPECT_EQ(done["stop_reason"], "\n");
  EXPECT_EQ(done["usage"]["cached_prompt_tokens"], 8);
  EXPECT_EQ(done["timings"]["time_to_first_token_s"], 0.25);
  EXPECT_EQ(done["timings"]["inter_token_latencies_s"].size(), 2u);
  json hello = json::parse(encode_ws_hello("m", {}));
  EXPECT_EQ(hello["protocol"], kProtocolVersion);
}

TEST(ws_codec, invalid_utf8_in_text_does_not_break_the_frame) {
  token_event t{"\xff\xfe", {1}, {}};
  json delta = json::parse(encode_ws_delta("a", t, nullptr));
  EXPECT_EQ(delta["type"], "delta");
}

}  // namespace
}  // namespace kvserve::net
