#pragma once
// The distributed event store: NATS JetStream (--store nats://HOST:PORT[,HOST:PORT...]).
//
//   stream <STREAM> (default TDHOOK)    subjects <prefix>.events.<project_id>.<event> (new events)
//                                       and <prefix>.retry.<sink> (dead letters sent back to one
//                                       sink by `tdhook spool retry`); <prefix> is the stream's
//                                       name in lower case. File storage, --replicas copies, the
//                                       duplicate window = --dedup-window, max age >= that
//                                       window, discard policy new: a full stream refuses new
//                                       events (503) rather than dropping old ones.
//   stream <STREAM>_DEAD                subjects <prefix>.dead.<sink>: dead letters, each with
//                                       the sink, its last error and the attempt count.
//   consumer <STREAM>_<sink>            one durable pull consumer per sink, shared by every
//                                       receiver and `--deliver-only` worker that has the sink.
//
// A publish carries Nats-Msg-Id = the receiver's de-duplication key, so a Tiledesk retry that
// reaches another receiver is still one event (the stream answers it as a duplicate); put_batch
// returns once JetStream acknowledged (stored, on a quorum with --replicas 3), and a publish not
// acknowledged within --store-timeout is a failure (503): nothing is claimed stored.
// Every message carries the record as its data and Tdhook-* headers (delivery id, event,
// project, subscription, times, the sinks it is due to), so a consumer needs nothing else. An
// event due to a forward: sink carries its original request after the record, with
// Tdhook-Record-Length saying where the record ends (dead letters too).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "store/store.hpp"

namespace tdhook::receiver {

struct NatsSinkOptions {
  std::string name;
  // file, stdout, exec-stream: one batch in flight across every worker of the consumer
  // (MaxAckPending = max_in_flight), so batches are written one after another.
  bool in_order = true;
  int max_in_flight = 256;
  std::chrono::milliseconds ack_wait{30000};  // a delivery not settled by then is redelivered
};

struct NatsStoreOptions {
  std::string url;  // "nats://h:p[,nats://h:p]" or "h:p,h:p"; tls:// for TLS
  std::string stream = "TDHOOK";
  int replicas = 1;
  std::filesystem::path creds_file;  // a NATS .creds file, or "user:password", or a token
  std::filesystem::path ca_file;     // CA certificates for tls://
  std::chrono::milliseconds timeout{2000};
  std::chrono::milliseconds dedup_window{24LL * 3600 * 1000};
  std::size_t max_pending = 100000;
  std::vector<NatsSinkOptions> sinks;  // the sinks this process delivers to (their consumers)
  bool deliver = true;  // false: take events only (no consumer is bound by this process)
  // `tdhook spool`: the stream must exist already; nothing is created or changed.
  bool for_inspection = false;
};

bool is_nats_url(std::string_view url) noexcept;

// What a 200 means with `replicas` copies of the stream (said at start and in /healthz): the
// server acknowledges a publish before it reaches a disk.
std::string_view nats_promise(int replicas) noexcept;

// The durable consumer name of a sink: <stream>_<sink>, with every character that a consumer
// name cannot hold replaced and a short hash of the sink's name added when it was changed.
std::string nats_consumer_name(std::string_view stream, std::string_view sink);

// Connects, creates or checks the streams and the sinks' consumers. Fails (nothing kept open)
// when the servers cannot be reached within the timeout or the stream cannot be set up.
Result<std::unique_ptr<Store>> open_nats_store(const NatsStoreOptions& options, const Logger& log);

}  // namespace tdhook::receiver
