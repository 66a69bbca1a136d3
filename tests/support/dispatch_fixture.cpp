#include "support/dispatch_fixture.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "doctest/doctest.h"

namespace tdhook::test {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int open_log(const std::filesystem::path& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

}  // namespace

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval
  }
  return condition();
}

std::string iso8601_ms(std::int64_t epoch_ms) {
  const std::time_t seconds = epoch_ms / 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[40];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(epoch_ms % 1000));
  return out;
}

DispatchFixture::DispatchFixture()
    : log_fd_(open_log(dir / "receiver.log")), log_(receiver::LogLevel::debug, log_fd_) {
  REQUIRE(log_fd_ >= 0);
  receiver::SpoolOptions options;
  options.data_dir = dir / "data";
  auto opened = receiver::Spool::open(options);
  REQUIRE(opened.ok());
  spool = std::move(*opened);
  spool->set_on_commit([this] {
    if (auto* d = wake_target_.load()) d->wake();
  });
}

DispatchFixture::~DispatchFixture() {
  wake_target_.store(nullptr);
  spool->set_on_commit({});
  if (dispatcher_) dispatcher_->stop();
  dispatcher_.reset();
  ::close(log_fd_);
}

std::string DispatchFixture::put(const std::string& id, const std::vector<std::string>& sinks,
                                 const std::string& payload_json, const std::string& event) {
  const nlohmann::json record = {
      {"id", id},
      {"event", event},
      {"project_id", "65533a0cb7e1c3d9503a10f1"},
      {"subscription_id", "65ae3debc91f04aa2e3a1109"},
      {"timestamp", 1707142867470},
      {"received_at", iso8601_ms(now_ms())},
      {"verified", "secret"},
      {"hook", {{"_id", "65ae3debc91f04aa2e3a1109"}, {"event", event}}},
      {"payload", nlohmann::json::parse(payload_json)},
  };
  const std::string text = record.dump();
  put_record(id, event, text, sinks);
  return text;
}

void DispatchFixture::put_record(const std::string& id, const std::string& event,
                                 const std::string& record, const std::vector<std::string>& sinks) {
  receiver::NewEvent e;
  e.delivery_id = id;
  e.dedup_key = "dedup-" + id;
  e.event = event;
  e.project_id = "65533a0cb7e1c3d9503a10f1";
  e.subscription_id = "65ae3debc91f04aa2e3a1109";
  e.timestamp_ms = 1707142867470;
  e.received_at_ms = now_ms();
  e.record = record;
  e.sinks = sinks;
  const auto put = spool->put(std::move(e));
  REQUIRE(put.outcome == receiver::PutOutcome::stored);
}

Result<std::unique_ptr<receiver::Dispatcher>> DispatchFixture::try_start(
    std::vector<receiver::SinkConfig> sinks) {
  return receiver::Dispatcher::start(*spool, std::move(sinks), log_, metrics);
}

receiver::Dispatcher& DispatchFixture::start(std::vector<receiver::SinkConfig> sinks) {
  auto started = try_start(std::move(sinks));
  REQUIRE(started.ok());
  dispatcher_ = std::move(*started);
  wake_target_.store(dispatcher_.get());
  return *dispatcher_;
}

std::int64_t DispatchFixture::count(const std::string& sink, receiver::DeliveryState state) {
  const auto counts = spool->counts(sink);
  REQUIRE(counts.ok());
  switch (state) {
    case receiver::DeliveryState::pending:
      return counts->pending;
    case receiver::DeliveryState::delivered:
      return counts->delivered;
    case receiver::DeliveryState::dead:
      return counts->dead;
  }
  return -1;
}

receiver::DeliveryInfo DispatchFixture::info(const std::string& id, const std::string& sink) {
  const auto details = spool->show(id);
  REQUIRE(details.ok());
  for (const auto& d : details->deliveries) {
    if (d.sink == sink) return d;
  }
  FAIL("no delivery of " << id << " to " << sink);
  return {};
}

std::string DispatchFixture::log_text() const { return read_file(dir / "receiver.log"); }

}  // namespace tdhook::test
