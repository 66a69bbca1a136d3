#pragma once
// Delivery: one queue per sink, fed from the spool. A sink delivers an event record (one JSON
// object) to stdout, a file, a script or an HTTP endpoint, or forwards Tiledesk's original
// notification to one; a failed delivery is retried with exponential backoff and jitter, then
// dead-lettered with its last error (Spool::mark_failed). Nothing is dropped.
//
// Sink specs (`--sink`): "stdout", "file:PATH", "exec:COMMAND", "exec-stream:COMMAND",
// "http://HOST[:PORT]/PATH" and "https://…" (the record, POSTed), "forward:http(s)://…" (the
// original request, POSTed as it came).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "delivery/observer.hpp"
#include "store/store.hpp"
#include "tdhook/pattern.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

// Per-event exec runs at once per sink, by default: as adnanh/webhook runs a script per request
// while earlier ones still run. Tiledesk sends events concurrently and in no order (a message
// can arrive before its conversation), so a script sees no order it could rely on anyway;
// `--exec-concurrency 1` runs one at a time, in arrival order.
inline constexpr int kDefaultExecConcurrency = 8;

struct SinkConfig {
  std::string spec;   // as given: "stdout", "file:/var/log/td.ndjson", "exec:./x.sh"
  std::string name;   // unique; the spool's sink key (default: spec)
  PatternSet filter;  // empty = every event
  // file
  std::uint64_t file_max_bytes = 0;  // 0 = no size rotation
  // fdatasync each batch before it counts as delivered: set with --durability power. Under
  // process durability a write() that returned is as safe as the spool's own commit.
  bool file_sync = true;
  // exec
  std::chrono::milliseconds exec_timeout{30000};
  int exec_concurrency = kDefaultExecConcurrency;  // exec: only; exec-stream and files: in order
  std::vector<std::string> pass_env;               // names added to PATH, HOME, LANG, TZ
  std::size_t exec_output_limit = 64 * 1024;       // bytes of script output kept for the log
  // http:, https:, forward:
  std::chrono::milliseconds http_timeout{10000};  // connect + request + answer, per attempt
  int http_concurrency = 8;                       // requests in flight at once per sink
  std::string http_ca;                            // CA file (PEM); "" = the system's CAs
  // retries
  int retry_max = 8;                           // attempts in all, then dead
  std::chrono::milliseconds retry_base{1000};  // delay before the 2nd attempt; doubles, + jitter
};

// Parses a spec into a SinkConfig with defaults (name = spec). invalid_config on bad specs.
// "NAME=SPEC" (NAME of letters, digits, - and _) gives the sink that name.
Result<SinkConfig> parse_sink_spec(std::string_view spec);

// Whether the sink delivers in arrival order (every sink but an exec: sink that runs several
// scripts at once, or an http sink that sends several requests at once), how many deliveries
// it runs at once (1 for a sink in order; else exec_concurrency or http_concurrency), and how
// many deliveries one of its batches takes.
bool sink_in_order(const SinkConfig& config) noexcept;
int sink_concurrency(const SinkConfig& config) noexcept;
std::size_t sink_batch_limit(const SinkConfig& config) noexcept;
// Whether the sink needs the original request beside the record (forward: sinks).
bool sink_needs_original(const SinkConfig& config) noexcept;

class Dispatcher {
 public:
  // Starts one delivery loop per sink. The spool (and the observer, if any: told of every
  // settled attempt) must outlive the dispatcher.
  static Result<std::unique_ptr<Dispatcher>> start(Store& spool, std::vector<SinkConfig> sinks,
                                                   const Logger& log, Metrics& metrics,
                                                   DeliveryObserver* observer = nullptr);
  ~Dispatcher();  // stop() if still running

  void wake();          // new events were committed
  void reopen_files();  // SIGHUP: reopen file sinks (logrotate)
  // Stops taking new deliveries, lets running ones finish or time out (exec timeout), returns.
  void stop();

  const std::vector<SinkConfig>& sinks() const noexcept;

 private:
  struct Impl;
  explicit Dispatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdhook::receiver
