#pragma once
// Sending a notification the way Tiledesk sends it: POST with Tiledesk's headers, in Tiledesk's
// order and case (reference §1.2), and Tiledesk's retry policy (reference §3.2-3.3). Used by
// `tdhook send` and by the simulator (`tdhook sim`).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/url.hpp"
#include "tdhook/result.hpp"

namespace tdhook::tools {

// A subscription target URL as parse_url() (receiver/http/url.hpp) reads it, with the `request`
// library's policy on top: user:pass@ becomes Basic auth (`authorization`) and a #fragment is
// dropped. host_header omits the port when it is the scheme's default, even if written.
struct Target : receiver::Url {
  std::string authorization;  // "Basic …" or empty
};
Result<Target> parse_target(std::string_view url);

struct DeliveryRequest {
  std::string url;
  std::string body;
  std::string secret;  // the x-hook-secret header value ("" = omit it)
  std::string origin = "http://localhost:3000";
  bool keep_alive = false;                           // false: "Connection: close", as Node 18 sends
  std::optional<std::chrono::milliseconds> timeout;  // none = wait forever, as Tiledesk does
  std::vector<std::pair<std::string, std::string>> extra_headers;  // for tampering tests
};

struct AttemptResult {
  int status = 0;     // 0 = transport error (refused, reset, timeout, TLS)
  std::string error;  // transport error text
  std::string body;   // response body
  std::string content_type;
  std::chrono::steady_clock::time_point started, finished;
  double planned_delay_ms = 0;  // the retry delay drawn before this attempt (0 for the first)
};

struct RetryPolicy {
  bool enabled = true;  // false: exactly one attempt
  double scale = 1.0;   // multiplies every delay (tests use e.g. 0.01)
  // Returns jitter in [0, 1); default: uniform random. Delay = (2^k * 1000 + 999*jitter) ms.
  std::function<double()> jitter;
  // Called after each attempt (logging).
  std::function<void(int attempt_number, const AttemptResult&)> on_attempt;
};

struct DeliveryResult {
  std::vector<AttemptResult> attempts;  // at least one
  const AttemptResult& final_attempt() const { return attempts.back(); }
};

// One POST, no retry.
AttemptResult post_once(const Target& target, const DeliveryRequest& request);
// POST with Tiledesk's retry policy: status 1xx, 429, 5xx retried while fewer than 2 retries were
// made (k = attempts so far); transport errors retried while transport errors <= 2 (k = transport
// errors so far); delay 2^k*1000 ms + jitter[0,999] ms from the end of the failed attempt.
DeliveryResult deliver(const DeliveryRequest& request, const RetryPolicy& policy);

}  // namespace tdhook::tools
