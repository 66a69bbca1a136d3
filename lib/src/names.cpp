// Stable names of the library's enums, and small free functions of the public headers.
#include <chrono>

#include "tdhook/algorithm.hpp"
#include "tdhook/event.hpp"
#include "tdhook/result.hpp"
#include "tdhook/verify.hpp"

namespace tdhook {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::missing_secret_header:
      return "missing_secret_header";
    case ErrorCode::secret_mismatch:
      return "secret_mismatch";
    case ErrorCode::malformed_body:
      return "malformed_body";
    case ErrorCode::malformed_envelope:
      return "malformed_envelope";
    case ErrorCode::missing_token:
      return "missing_token";
    case ErrorCode::token_malformed:
      return "token_malformed";
    case ErrorCode::token_alg_not_allowed:
      return "token_alg_not_allowed";
    case ErrorCode::token_bad_signature:
      return "token_bad_signature";
    case ErrorCode::token_claims_mismatch:
      return "token_claims_mismatch";
    case ErrorCode::token_hook_mismatch:
      return "token_hook_mismatch";
    case ErrorCode::stale:
      return "stale";
    case ErrorCode::invalid_config:
      return "invalid_config";
    case ErrorCode::payload_mismatch:
      return "payload_mismatch";
    case ErrorCode::invalid_input:
      return "invalid_input";
  }
  return "unknown";
}

namespace {
struct AlgName {
  Algorithm alg;
  std::string_view name;
};
constexpr AlgName kAlgNames[] = {
    {Algorithm::hs256, "HS256"}, {Algorithm::rs256, "RS256"}, {Algorithm::rs384, "RS384"},
    {Algorithm::rs512, "RS512"}, {Algorithm::es256, "ES256"}, {Algorithm::es384, "ES384"},
    {Algorithm::ps256, "PS256"},
};
}  // namespace

std::string_view to_string(Algorithm alg) noexcept {
  for (const auto& a : kAlgNames)
    if (a.alg == alg) return a.name;
  return "unknown";
}

std::optional<Algorithm> algorithm_from_string(std::string_view name) noexcept {
  for (const auto& a : kAlgNames)
    if (a.name == name) return a.alg;
  return std::nullopt;
}

std::optional<VerifyMode> verify_mode_from_string(std::string_view name) noexcept {
  if (name == "both") return VerifyMode::both;
  if (name == "header") return VerifyMode::header_only;
  if (name == "token") return VerifyMode::token_only;
  return std::nullopt;
}

std::int64_t system_clock_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string Verification::describe() const {
  std::string out;
  if (secret) out = "secret";
  if (token_alg) {
    if (!out.empty()) out += '+';
    out += to_string(*token_alg);
    if (global_key) out += " (global)";
  }
  return out.empty() ? "none" : out;
}

}  // namespace tdhook
