#pragma once
// What the dispatcher tells an observer (the inspector, inspect/) about each delivery attempt
// once its outcome is settled in the store. Called on the sink's delivery thread (or an exec
// worker): an observer must be quick and must not block. The report holds views into the
// dispatcher's own data, valid for the duration of the call only: the observer copies what it
// keeps.

#include <cstdint>
#include <string_view>

namespace tdhook::receiver {

struct ReportedAttempt {
  int number = 0;
  std::int64_t started_at_ms = 0, finished_at_ms = 0;  // wall clock
  bool ok = false;
  std::string_view error;
};

struct AttemptReport {
  std::string_view delivery_id;
  std::string_view sink;
  std::string_view event;
  std::int64_t received_at_ms = 0;
  ReportedAttempt attempt;
  std::string_view output;  // exec: the tail of the script's output; http: the answer's first bytes
  bool dead = false;        // this failure was the last attempt
  std::int64_t next_attempt_at_ms = 0;  // a failure that is not dead: when it is tried again
};

class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  virtual void on_attempt(const AttemptReport& report) noexcept = 0;
};

}  // namespace tdhook::receiver
