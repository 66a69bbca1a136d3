#pragma once
// The dispatcher's internal view of a sink: something that takes a batch of due deliveries and
// says, for each one, whether it was delivered. Retries, dead letters and metrics are the
// dispatcher's business; a sink only delivers and reports, and never throws for a failed
// delivery (a full disk or a crashing script is an outcome, not an exception).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "delivery/dispatcher.hpp"
#include "http/url.hpp"
#include "store/store.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

struct DeliveryOutcome {
  DeliveryOutcome() = default;
  DeliveryOutcome(bool delivered, std::string why, std::string said = {})
      : ok(delivered), error(std::move(why)), output(std::move(said)) {}

  bool ok = false;
  std::string error;  // why it failed: "exit status 3", "write: No space left on device"
  // For the inspector (AttemptReport::output), ok or not: an exec sink's last kOutputKept bytes
  // of script output, an http sink's first kOutputKept bytes of the answer's body.
  std::string output;
};

inline constexpr std::size_t kOutputKept = 2 * 1024;

// Deliveries per batch (Sink::batch_limit) of the sinks that take more than one at a time.
inline constexpr std::size_t kStdoutBatch = 64;
inline constexpr std::size_t kFileBatch = 256;    // one write (and with power one sync) each
inline constexpr std::size_t kStreamBatch = 256;  // exec-stream: records in flight at once

class Sink {
 public:
  virtual ~Sink() = default;
  // How many due deliveries one deliver() call takes: a file sink syncs once per batch.
  virtual std::size_t batch_limit() const noexcept { return 1; }
  // Delivers `batch` in order; returns one outcome per delivery, in the same order. Called by
  // one thread at a time, except for sinks that run several deliveries at once
  // (sink_concurrency() > 1: exec and http sinks, thread-safe there).
  virtual std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) = 0;
  // SIGHUP/logrotate: reopen files before the next batch. Safe from any thread.
  virtual void request_reopen() noexcept {}
};

// One NDJSON line per record on `fd` (1 in the receiver), written and flushed per event.
std::unique_ptr<Sink> make_stdout_sink(int fd);

// Appends NDJSON to `path`, one fdatasync per batch; rotates to PATH.1.. when `max_bytes` > 0
// and the file would grow past it. Fails (invalid_config) when the file cannot be opened.
Result<std::unique_ptr<Sink>> make_file_sink(const std::string& path, std::uint64_t max_bytes,
                                             bool sync, const Logger& log);

// Runs `command` (config.spec after "exec:") once per delivery, the record on stdin.
std::unique_ptr<Sink> make_exec_sink(const SinkConfig& config, std::string command,
                                     const Logger& log);

// One long-lived `command` (config.spec after "exec-stream:"): a record line per delivery on its
// stdin, an "ok ID" / "fail ID REASON" line per delivery back on its stdout; restarted when it
// dies or hangs (exec_timeout without an acknowledgement). See sink_exec_stream.cpp.
std::unique_ptr<Sink> make_exec_stream_sink(const SinkConfig& config, std::string command,
                                            const Logger& log);

// An http:, https: or forward: sink's URL: parse_url() (http/url.hpp) and the sink's policy on
// top. invalid_config, saying why, for a scheme other than "http://" or "https://" (lower case,
// as sink specs are recognized), anything parse_url() refuses, user:password@ (it would show in
// logs and metrics as the sink's name), a #fragment, and spaces, control or non-ASCII bytes
// anywhere (percent-encode them).
Result<Url> parse_http_url(std::string_view url);

// POSTs each delivery to `url` (config.spec, or config.spec after "forward:" when `forward`):
// the event record as application/json, or with `forward` the original request as Tiledesk sent
// it (Delivery::original). 2xx = delivered; redirects are not followed. Up to
// sink_concurrency(config) requests at once (thread-safe deliver()), each on a kept-alive
// connection of its own; each attempt ends after config.http_timeout. https: verifies the
// server's certificate against config.http_ca, or the system's CAs. invalid_config when the URL
// or the CA file cannot be used.
Result<std::unique_ptr<Sink>> make_http_sink(const SinkConfig& config, std::string_view url,
                                             bool forward);

// Writes all of `data` to `fd`, retrying partial writes and EINTR. false with errno on failure.
bool write_fully(int fd, std::string_view data) noexcept;

}  // namespace tdhook::receiver
