#pragma once
// What the dispatcher tells an observer (the inspector, inspect/) about each delivery attempt
// once its outcome is settled in the store. Called on the sink's delivery thread (or an exec
// worker): an observer must be quick and must not block.

#include <cstdint>
#include <string>

#include "store/store.hpp"

namespace tdhook::receiver {

struct AttemptReport {
  std::string delivery_id;
  std::string sink;
  std::string event;
  std::int64_t received_at_ms = 0;
  Attempt attempt;     // number, started/finished (wall ms), ok, error
  std::string output;  // exec: the tail of the script's output; http: the answer's first bytes
  bool dead = false;   // this failure was the last attempt
  std::int64_t next_attempt_at_ms = 0;  // a failure that is not dead: when it is tried again
};

class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  virtual void on_attempt(const AttemptReport& report) noexcept = 0;
};

}  // namespace tdhook::receiver
