#pragma once
/// Status and result types: errors cross the model, backend, actor and network boundaries as
/// values, never as exceptions.

#include <string>
#include <utility>
#include <variant>

namespace kvserve {

/// Stable error categories. net/ maps them to HTTP statuses and WebSocket error codes.
enum class status_code {
  kOk,
  kInvalidArgument,   ///< bad input from the caller (flag, request field, prompt)
  kNotFound,          ///< a file or entity that does not exist
  kUnsupported,       ///< valid input the engine does not handle (tensor type, architecture)
  kCorruptData,       ///< a file that is truncated or malformed
  kOutOfMemory,       ///< host or device memory, or KV blocks, exhausted
  kOverloaded,        ///< the waiting queue is full
  kCancelled,         ///< cancelled by the client
  kDeadlineExceeded,  ///< the request's deadline passed
  kInternal,          ///< a bug or a backend failure
};

/// Name of a status code, e.g. "invalid_argument"; stable, used in error frames.
const char* to_string(status_code code);

/// Either ok or an error code with a one-line, human-readable message.
class [[nodiscard]] status {
 public:
  status() = default;
  status(status_code code, std::string message) : code_(code), message_(std::move(message)) {}
  static status ok() { return {}; }

  bool is_ok() const { return code_ == status_code::kOk; }
  explicit operator bool() const { return is_ok(); }
  status_code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  status_code code_ = status_code::kOk;
  std::string message_;
};

/// A value or the status that explains its absence.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::move(value)) {}       // NOLINT: implicit by design
  result(status error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool is_ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  /// The error; only valid when !is_ok().
  const status& error() const { return std::get<status>(state_); }

 private:
  std::variant<T, status> state_;
};

}  // namespace kvserve
