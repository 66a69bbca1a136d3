#pragma once
// The receiver's local admin endpoint, and its client.
//
// The log store is opened by one process only (store.lock), so `tdhook spool` cannot open it
// beside a running receiver: it asks the receiver instead, over a Unix socket in the data
// directory, <data-dir>/admin.sock (mode 0600: whoever can use it can retry and purge, so only
// the receiver's own user). Without a running receiver, `tdhook spool` opens the store itself.
//
// Protocol: per connection, any number of requests, each one JSON object on one line (at most
// 64 KiB), each answered by one JSON object on one line, in order:
//   {"op":"list","state":"dead","event":"request.*","sink":"s","since_ms":1,"until_ms":2,
//    "limit":100}                                  -> {"ok":true,"deliveries":[info...]}
//   {"op":"show","id":"D"}                         -> {"ok":true,"record":"...","deliveries":
//                                                      [info...],"attempts":[attempt...],
//                                                      "original":"..."}
//   {"op":"retry","id":"D"} / {"op":"retry","all_dead":true}   -> {"ok":true,"count":N}
//   {"op":"purge","older_than_ms":T}               -> {"ok":true,"count":N}
//   {"op":"counts","sink":"s"} (sink optional)     -> {"ok":true,"pending":N,"delivered":N,
//                                                      "dead":N}
// Every op calls the Store method of the same name (purge: purge_delivered(T), T a time in ms
// since the epoch, as the Store takes it). Every filter key of list is optional. A failure is
// {"ok":false,"code":"<ErrorCode name>","error":"<detail>"}: the Error's code and detail as the
// store gave them, so that is_not_found() holds on the client side too. The record travels as
// a JSON string, byte for byte. So does the original request kept for forward: sinks
// (Details::original, as stored: secret and token unmasked, like the store files the socket's
// user can read anyway), present only when one is kept; one that is not UTF-8 throughout (a
// header value with obs-text bytes) comes as "original_base64" (RFC 4648, padded) instead. A
// client reads neither key as none kept (a receiver older than the key sends neither).
//   info:    {"id","sink","event","project_id","timestamp_ms","received_at_ms","state",
//             "attempts","next_attempt_at_ms","last_error"}
//   attempt: {"sink","number","started_at_ms","finished_at_ms","ok","error"}

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "base/log.hpp"
#include "store/store.hpp"

namespace tdhook::receiver {

// <data-dir>/admin.sock
std::filesystem::path admin_socket_path(const std::filesystem::path& data_dir);

// Serves the protocol above on one thread, with poll(): admin requests are rare and short,
// so one thread serving up to kMaxConnections clients (each request run to its end before the
// next) keeps the receiver's thread count and memory fixed whatever a local client does; a
// purge that takes a while only delays other admin requests, never intake or delivery.
class AdminServer {
 public:
  static constexpr std::size_t kMaxConnections = 8;
  static constexpr std::size_t kMaxRequestBytes = 64 * 1024;
  // A connection that sends nothing for this long is closed, so that idle clients cannot keep
  // every slot.
  static constexpr std::chrono::seconds kIdleTimeout{60};

  // Listens on `socket_path` (a file left there by a receiver that was killed is removed first:
  // the caller holds the store, so no other receiver serves this data directory) and starts the
  // thread. `store` and `log` must outlive the server.
  static Result<std::unique_ptr<AdminServer>> start(Store& store,
                                                    const std::filesystem::path& socket_path,
                                                    const Logger& log);
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Closes every connection, joins the thread and removes the socket file. Idempotent.
  void stop();

  // One request line in, one answer line out (no newline): what a connection is answered.
  // Never throws. Public for tests.
  // `log`, if given, records the changes (retry, purge) with their counts.
  static std::string answer(Store& store, std::string_view request_line,
                            const Logger* log = nullptr);

 private:
  AdminServer(Store& store, std::filesystem::path path, const Logger& log)
      : store_(store), path_(std::move(path)), log_(log) {}
  void run();

  Store& store_;
  std::filesystem::path path_;
  const Logger& log_;
  int listen_fd_ = -1;
  bool bound_ = false;  // the socket file is ours to remove
  int wake_fd_ = -1;    // eventfd: stop() wakes the poll()
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// The client of AdminServer: the inspection methods each send one request on a new connection
// and decode the answer. The delivery path (put_batch, due, next_due, mark_batch) is the
// receiver's own and is refused with an error.
class RemoteStore final : public Store {
 public:
  static constexpr std::chrono::seconds kTimeout{10};  // for the answer: a purge takes a while

  explicit RemoteStore(std::filesystem::path socket_path,
                       std::chrono::milliseconds timeout = kTimeout)
      : path_(std::move(socket_path)), timeout_(timeout) {}

  std::vector<PutResult> put_batch(std::vector<NewEvent> events) override;
  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                    std::size_t limit) override;
  std::optional<std::int64_t> next_due(const std::string& sink) override;
  Status mark_batch(const std::vector<Mark>& marks) override;

  Result<std::int64_t> retry(const std::optional<std::string>& delivery_id, bool all_dead) override;
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) override;
  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) override;
  Result<Details> show(const std::string& delivery_id) override;
  Result<StoreCounts> counts(const std::optional<std::string>& sink) override;

  std::int64_t pending_total() const noexcept override { return 0; }
  bool writable() const noexcept override { return true; }
  std::uint64_t commits() const noexcept override { return 0; }
  void set_on_commit(std::function<void()> /*callback*/) override {}

  // Sends one request line (no newline) and returns the answer line. Public for tests.
  Result<std::string> exchange(const std::string& request) const;

 private:
  std::filesystem::path path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace tdhook::receiver
