#pragma once
// What the intake tells an observer (the inspector, inspect/) about each request it answered on
// the POST path, refused ones included: the request as received and the outcome with its reason
// code. Called once per request, after the answer is decided, on the thread that decided it
// (an HTTP worker or the store's writer): an observer must be quick and must not block.
// Requests for /healthz and /metrics are not reported.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tdhook::receiver {

struct ObservedRequest {
  std::int64_t received_at_ms = 0;  // wall clock, when the head was read
  std::string remote;               // "127.0.0.1:53412"
  std::string method, target;       // empty when the head itself could not be read
  std::vector<std::pair<std::string, std::string>> headers;  // as received, secret unmasked
  std::string body;  // as received (empty when refused before the body was read)
  bool body_read = false;
  // The answer.
  int status = 0;
  std::string reason;  // the reason code: "stored", "duplicate", "secret_mismatch", ...
  std::string detail;  // the refusal's detail as the log has it (never a secret)
  // Verified events (stored, duplicate, filtered, no_sink): what the envelope said.
  std::string delivery_id;  // stored: the new id; duplicate: the first occurrence's
  std::string event, project_id;
  std::vector<std::string> sinks;  // stored: the sinks it is due to (the record: Store::show)
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void on_request(ObservedRequest&& request) noexcept = 0;
};

}  // namespace tdhook::receiver
