#pragma once
// A real spool in a scratch directory, a JSON log captured in a file and a dispatcher wired to
// the spool's commits as the receiver wires them: the parts the delivery tests drive.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "delivery/dispatcher.hpp"
#include "store/spool.hpp"
#include "support/files.hpp"

namespace tdhook::test {

// Polls `condition` until it holds or `limit` passes; the result of the last look.
bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds limit = std::chrono::seconds(10));

// "2024-02-05T14:21:07.433Z" for a time in epoch milliseconds.
std::string iso8601_ms(std::int64_t epoch_ms);

class DispatchFixture {
 public:
  DispatchFixture();
  ~DispatchFixture();
  DispatchFixture(const DispatchFixture&) = delete;
  DispatchFixture& operator=(const DispatchFixture&) = delete;

  // Stores an event record with delivery id `id` for `sinks`; returns the record.
  std::string put(const std::string& id, const std::vector<std::string>& sinks,
                  const std::string& payload_json = R"({"n":1})",
                  const std::string& event = "lead.create");
  // Stores `record` as given (it must carry the id and the event).
  void put_record(const std::string& id, const std::string& event, const std::string& record,
                  const std::vector<std::string>& sinks);

  Result<std::unique_ptr<receiver::Dispatcher>> try_start(std::vector<receiver::SinkConfig> sinks);
  // Starts the dispatcher (REQUIREs success); the fixture owns it and stops it first.
  receiver::Dispatcher& start(std::vector<receiver::SinkConfig> sinks);

  std::int64_t count(const std::string& sink, receiver::DeliveryState state);
  receiver::DeliveryInfo info(const std::string& id, const std::string& sink);
  std::string log_text() const;

  TempDir dir;
  receiver::Metrics metrics;
  std::unique_ptr<receiver::Spool> spool;

 private:
  int log_fd_ = -1;
  receiver::Logger log_;
  std::unique_ptr<receiver::Dispatcher> dispatcher_;
  std::atomic<receiver::Dispatcher*> wake_target_{nullptr};  // read by the spool's commit hook
};

}  // namespace tdhook::test
