#pragma once
// What the intake tells an observer (the inspector, inspect/) about each request it answered on
// the POST path, refused ones included: the request as received and the outcome with its reason
// code. Requests for /healthz and /metrics are not reported.
//
// Everything is passed as views into the intake's own request, valid for the duration of the
// call only: the observer copies what it keeps (into buffers it reuses, so that the hot path
// neither allocates nor frees for it). A request answered at once is reported with on_request();
// a stored one in two steps, because its answer comes later on the store's writer thread, when
// the request itself is gone: begin() while the request is at hand (an HTTP worker), settle()
// with the outcome, exactly once, from any thread. Both are called on the POST path: an observer
// must be quick and must not block.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace tdhook::receiver {

struct ObservedRequest {
  std::int64_t received_at_ms = 0;  // wall clock, when the head was read
  std::string_view remote;          // "127.0.0.1:53412"
  std::string_view method, target;  // empty when the head itself could not be read
  std::span<const std::pair<std::string, std::string>> headers;  // as received, secret unmasked
  std::string_view body;  // as received (empty when refused before the body was read)
  bool body_read = false;
  // Verified events (stored, duplicate, filtered, no_sink): what the envelope said.
  std::string_view event, project_id;
  std::span<const std::string> sinks;  // stored: the sinks it is due to (the record: Store::show)
};

// The answer.
struct ObservedOutcome {
  int status = 0;
  std::string_view reason;       // the reason code: "stored", "duplicate", "secret_mismatch", ...
  std::string_view detail;       // the refusal's detail as the log has it (never a secret)
  std::string_view delivery_id;  // stored: the new id; duplicate: the first occurrence's
};

class RequestObserver {
 public:
  using Ticket = std::uint64_t;  // 0: the observer keeps nothing of this request

  virtual ~RequestObserver() = default;
  // Copies the request; settle() follows exactly once with the same ticket, 0 included.
  virtual Ticket begin(const ObservedRequest& request) noexcept = 0;
  virtual void settle(Ticket ticket, const ObservedOutcome& outcome) noexcept = 0;

  // A request answered at once.
  void on_request(const ObservedRequest& request, const ObservedOutcome& outcome) noexcept {
    settle(begin(request), outcome);
  }
};

}  // namespace tdhook::receiver
