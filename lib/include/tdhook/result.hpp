#pragma once
// Errors and results of libtdhook.
//
// No exception crosses the library's public API: every fallible call returns a Result<T>, which
// holds either a value or an Error. An Error carries a stable ErrorCode (its snake_case name, from
// to_string(), appears in logs and in `tdhook verify` output and never changes) and a detail
// string for humans. Details never contain a secret or a token.

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tdhook {

enum class ErrorCode {
  // Verification failures, in the order the verifier checks them (DESIGN.md).
  missing_secret_header,
  secret_mismatch,
  malformed_body,
  malformed_envelope,
  missing_token,
  token_malformed,
  token_alg_not_allowed,
  token_bad_signature,
  token_claims_mismatch,
  token_hook_mismatch,
  stale,
  // Configuration rejected by a factory (Verifier::create, signing keys, patterns).
  invalid_config,
  // A verified payload that does not fit the typed model asked for.
  payload_mismatch,
  // Input that cannot be used for another reason (bad JSON given to the signer, I/O).
  invalid_input,
};

// The stable snake_case name of `code`, e.g. "secret_mismatch".
std::string_view to_string(ErrorCode code) noexcept;

struct Error {
  ErrorCode code;
  std::string detail;  // human-readable; never contains a secret or a token
};

// A value of type T, or an Error. Check ok() (or the bool conversion) before value().
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  Result(ErrorCode code, std::string detail)
      : v_(std::in_place_index<1>, Error{code, std::move(detail)}) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

// Result of a call that returns nothing on success.
struct Ok {};
using Status = Result<Ok>;

}  // namespace tdhook
