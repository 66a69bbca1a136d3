#include "intake/status.hpp"

namespace tdhook::receiver {

HttpOutcome outcome_for(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::malformed_body:
      return {400, "malformed_body"};
    case ErrorCode::malformed_envelope:
      return {400, "malformed_envelope"};
    case ErrorCode::missing_secret_header:
      return {401, "missing_secret_header"};
    case ErrorCode::secret_mismatch:
      return {401, "secret_mismatch"};
    case ErrorCode::missing_token:
      return {401, "missing_token"};
    case ErrorCode::token_malformed:
      return {401, "token_malformed"};
    case ErrorCode::token_alg_not_allowed:
      return {401, "token_alg_not_allowed"};
    case ErrorCode::token_bad_signature:
      return {401, "token_bad_signature"};
    case ErrorCode::token_claims_mismatch:
      return {401, "token_claims_mismatch"};
    case ErrorCode::token_hook_mismatch:
      return {401, "token_hook_mismatch"};
    case ErrorCode::stale:
      return {401, "stale"};
    case ErrorCode::invalid_config:
      return {500, "invalid_config"};
    case ErrorCode::payload_mismatch:
      return {500, "payload_mismatch"};
    case ErrorCode::invalid_input:
      return {500, "invalid_input"};
  }
  return {500, "internal_error"};
}

HttpOutcome outcome_for(PutOutcome outcome) noexcept {
  switch (outcome) {
    case PutOutcome::stored:
      return {200, "stored"};
    case PutOutcome::duplicate:
      return {200, "duplicate"};
    case PutOutcome::full:
      return {503, "spool_full"};
    case PutOutcome::failed:
      return {503, "spool_failed"};
  }
  return {503, "spool_failed"};
}

}  // namespace tdhook::receiver
