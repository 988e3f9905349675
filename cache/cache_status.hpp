#pragma once
/// Status and result types of the KV cache. cache/ depends on the standard library only, so it
/// has its own small status type; actors/ maps cache_errc onto kvserve::status_code
/// (kOutOfBlocks -> kOutOfMemory, kInvalidConfig/kInvalidArgument -> kInvalidArgument, the
/// rest -> kInternal).

#include <string>
#include <utility>
#include <variant>

namespace kvserve {

/// Stable error categories of the cache.
enum class cache_errc {
  kOk,
  kInvalidConfig,      ///< e.g. a block size other than 2, 4, 8, 16, 32, 64
  kInvalidArgument,    ///< a call that breaks its contract (too many tokens, bad retention)
  kUnknownSequence,    ///< no live sequence has this id
  kDuplicateSequence,  ///< a sequence with this id is already live
  kOutOfBlocks,        ///< not enough free + evictable blocks; nothing was changed
  kStalePlan,          ///< apply() got a plan computed before another mutation
  kInvariantViolated,  ///< check_invariants() found a bug
};

/// Name of an error category, e.g. "out_of_blocks".
const char* to_string(cache_errc code);

/// Either ok or an error category with a one-line message.
class [[nodiscard]] cache_status {
 public:
  cache_status() = default;
  cache_status(cache_errc code, std::string message) : code_(code), message_(std::move(message)) {}
  static cache_status ok() { return {}; }

  bool is_ok() const { return code_ == cache_errc::kOk; }
  explicit operator bool() const { return is_ok(); }
  cache_errc code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  cache_errc code_ = cache_errc::kOk;
  std::string message_;
};

/// A value or the status that explains its absence.
template <class T>
class [[nodiscard]] cache_result {
 public:
  cache_result(T value) : state_(std::move(value)) {}             // NOLINT: implicit by design
  cache_result(cache_status error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool is_ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  /// The error; only valid when !is_ok().
  const cache_status& error() const { return std::get<cache_status>(state_); }

 private:
  std::variant<T, cache_status> state_;
};

}  // namespace kvserve
