#include "net/api_error.hpp"

#include <nlohmann/json.hpp>

namespace kvserve::net {

api_error from_status(const status& st) {
  api_error err{to_string(st.code()), st.message(), 500};
  switch (st.code()) {
    case status_code::kOk:
    case status_code::kInvalidArgument:
    case status_code::kUnsupported:
    case status_code::kCorruptData:
      err.http_status = 400;
      break;
    case status_code::kNotFound:
      err.http_status = 404;
      break;
    case status_code::kOverloaded:
      err.http_status = 429;
      break;
    case status_code::kOutOfMemory:
      err.http_status = 503;
      break;
    case status_code::kCancelled:
      err.http_status = 499;
      break;
    case status_code::kDeadlineExceeded:
      err.http_status = 504;
      break;
    case status_code::kInternal:
      err.http_status = 500;
      break;
  }
  return err;
}

namespace {
const char* openai_type(int http_status) {
  switch (http_status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 413:
      return "invalid_request_error";
    case 429:
      return "rate_limit_error";
    default:
      return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}
}  // namespace

std::string openai_error_body(const api_error& err) {
  nlohmann::json j = {{"error",
                       {{"message", err.message},
                        {"type", openai_type(err.http_status)},
                        {"param", nullptr},
                        {"code", err.code}}}};
  return j.dump();
}

}  // namespace kvserve::net
