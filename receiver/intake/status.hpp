#pragma once
// The one place where verification errors and spool outcomes become HTTP answers (DESIGN.md,
// "Status codes mean something"). Every other part of the receiver asks here.

#include <string_view>

#include "store/store.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

// What the receiver answers for a request it refuses or accepts. `reason` is a stable
// snake_case name used in logs and in the tdhook_requests_total metric.
struct HttpOutcome {
  int status = 200;
  std::string_view reason;
};

// 400 for malformed_body/malformed_envelope, 401 for every authentication failure, 500 for
// codes that cannot come out of verification (a bug, logged as such).
HttpOutcome outcome_for(ErrorCode code) noexcept;

// stored/duplicate -> 200, full/failed -> 503 (with Retry-After, so Tiledesk retries).
HttpOutcome outcome_for(PutOutcome outcome) noexcept;

// Answers decided before the body is read.
namespace outcomes {
inline constexpr HttpOutcome not_found{404, "not_found"};
inline constexpr HttpOutcome method_not_allowed{405, "method_not_allowed"};
inline constexpr HttpOutcome too_large{413, "body_too_large"};
inline constexpr HttpOutcome unsupported_media_type{415, "unsupported_media_type"};
inline constexpr HttpOutcome bad_request{400, "bad_request"};  // body could not be read
inline constexpr HttpOutcome filtered{200, "filtered"};        // verified, not in --events
inline constexpr HttpOutcome unrouted{200, "no_sink"};         // verified, no sink takes it
}  // namespace outcomes

// The seconds in Retry-After of a 503: Tiledesk ignores it (it waits 2-3 s, then 4-5 s), other
// senders may not.
inline constexpr int retry_after_seconds = 2;

// The body of every 401, whatever the reason: a client learns nothing about which check failed.
inline constexpr std::string_view unauthorized_body = R"({"ok":false,"error":"unauthorized"})";

}  // namespace tdhook::receiver
