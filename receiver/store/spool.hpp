#pragma once
// The receiver's durable spool: every verified event is committed here before its 200 is sent,
// and every sink delivers from here. One SQLite database in WAL mode (<data-dir>/spool.db).
//
// Thread-safety: every method may be called from any thread. put() implements group commit:
// concurrent callers share one transaction (and one sync); each returns only after the
// transaction holding its own event has committed.
//
// States of a (event, sink) delivery: pending -> delivered, or pending -> (failed attempts) ->
// dead. `tdhook spool retry` moves dead back to pending. Nothing is ever dropped silently.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::receiver {

// process: committed to the OS (WAL, synchronous=NORMAL) before answering; survives a crash of
// the process. power: synced to the disk (synchronous=FULL) before answering; survives power loss.
enum class Durability { process, power };

struct SpoolOptions {
  std::filesystem::path data_dir;  // created if missing
  Durability durability = Durability::process;
  std::chrono::milliseconds dedup_window{24 * 3600 * 1000};
  std::size_t max_pending = 100000;  // put() answers full beyond this
  bool read_only = false;            // for `tdhook spool ls/show`
  // PRAGMA quick_check at open (the receiver). `tdhook spool` skips it: on a large spool it is
  // a read of several seconds, during which a running receiver's write-ahead log cannot be
  // restarted and grows by everything written meanwhile. SQLite still reports a damaged page
  // that a command reads.
  bool check_integrity = true;
  // The receiver's spool: the writing thread checkpoints the write-ahead log between batches
  // (Spool::maintain) instead of SQLite doing it inside the commit that crosses its threshold,
  // and the log file is never truncated inside a commit. Other openers (`tdhook spool`) never
  // checkpoint while another connection is open.
  bool writer_checkpoints = false;
};

// An event to store. `record` is the complete event record (one JSON object, no newline) that
// sinks receive; `sinks` are the names of the sinks whose filter matched.
struct NewEvent {
  std::string delivery_id;  // unique, chosen by the caller
  std::string dedup_key;    // equal keys within the window = the same occurrence
  std::string event;        // hook.event
  std::string project_id;
  std::string subscription_id;
  std::int64_t timestamp_ms = 0;  // Tiledesk's
  std::int64_t received_at_ms = 0;
  std::string record;
  std::vector<std::string> sinks;
};

enum class PutOutcome { stored, duplicate, full, failed };
struct PutResult {
  PutOutcome outcome = PutOutcome::failed;
  std::string delivery_id;  // stored: the new id; duplicate: the first occurrence's id
  std::string error;        // failed: why (disk full, I/O error, ...)
};

enum class DeliveryState { pending, delivered, dead };
std::string_view to_string(DeliveryState state) noexcept;

// One delivery due to a sink.
struct Delivery {
  std::int64_t event_row = 0;  // internal row id
  std::string delivery_id;
  std::string sink;
  std::string event;
  std::string project_id;
  std::string subscription_id;
  std::int64_t timestamp_ms = 0;
  std::string record;
  int attempts = 0;  // attempts made so far
  std::int64_t received_at_ms = 0;
};

struct Attempt {
  int number = 0;
  std::int64_t started_at_ms = 0;
  std::int64_t finished_at_ms = 0;
  bool ok = false;
  std::string error;
};

// A row of `tdhook spool ls` / `show`.
struct DeliveryInfo {
  std::string delivery_id;
  std::string sink;
  std::string event;
  std::string project_id;
  std::int64_t timestamp_ms = 0;
  std::int64_t received_at_ms = 0;
  DeliveryState state = DeliveryState::pending;
  int attempts = 0;
  std::int64_t next_attempt_at_ms = 0;
  std::string last_error;
};

struct ListFilter {
  std::optional<DeliveryState> state;
  std::optional<std::string> event_pattern;  // tdhook::PatternSet syntax
  std::optional<std::string> sink;
  std::optional<std::int64_t> since_ms, until_ms;  // on received_at
  std::size_t limit = 1000;
};

struct SpoolCounts {
  std::int64_t pending = 0, delivered = 0, dead = 0;
};

class Spool {
 public:
  static Result<std::unique_ptr<Spool>> open(const SpoolOptions& options);
  ~Spool();

  // Stores `event` durably (see Durability) unless it is a duplicate within the window, the
  // spool is full, or the disk fails. Blocks until committed. Never throws.
  PutResult put(NewEvent event);
  // Stores several events in one transaction (one sync), as put() would each; one result per
  // event, in order. For a caller that does its own batching (the receiver's spool writer).
  std::vector<PutResult> put_batch(std::vector<NewEvent> events);

  // Up to `limit` pending deliveries of `sink` whose next attempt is due at `now_ms`, oldest first.
  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                    std::size_t limit);
  // Earliest next_attempt_at of a pending delivery of `sink`, if any.
  std::optional<std::int64_t> next_due(const std::string& sink);

  Status mark_delivered(const Delivery& d, const Attempt& attempt);
  // Outcomes of a batch (a file sink's) in one transaction, each as mark_delivered (ok) or
  // mark_failed would record it. All or nothing.
  struct Mark {
    const Delivery* delivery = nullptr;
    Attempt attempt;
    std::int64_t next_attempt_at_ms = 0;  // a failure that is not dead: when to try again
    bool dead = false;
  };
  Status mark_batch(const std::vector<Mark>& marks);
  // A failed attempt: stays pending until `next_attempt_at_ms`, or becomes dead when `dead`.
  Status mark_failed(const Delivery& d, const Attempt& attempt, std::int64_t next_attempt_at_ms,
                     bool dead);

  // Undelivered deliveries of `delivery_id` (dead or waiting) and/or every dead delivery
  // (`all_dead`) back to pending, due now; attempts are kept.
  Result<std::int64_t> retry(const std::optional<std::string>& delivery_id, bool all_dead);
  // Removes delivered events older than `older_than_ms` (all sinks delivered) and dedup keys
  // older than the window. Returns the number of events removed.
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms);

  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter);
  // The record and every attempt of one delivery id (all sinks).
  struct Details {
    std::string record;
    std::vector<DeliveryInfo> deliveries;
    std::vector<std::pair<std::string, Attempt>> attempts;  // (sink, attempt)
  };
  Result<Details> show(const std::string& delivery_id);

  Result<SpoolCounts> counts(const std::optional<std::string>& sink);
  std::int64_t pending_total() const noexcept;  // cheap, kept in memory
  // False after a disk failure, until a write works again: while false, each call (at most one a
  // second) tries a small write when the file system has room, so that /healthz sees the disk
  // come back without waiting for the next event.
  bool writable() const noexcept;
  std::uint64_t commits() const noexcept;  // put() transactions committed (group commit)

  // With writer_checkpoints: call from the writing thread between batches (`idle`: nothing
  // was written for a while). Copies the write-ahead log into the database once it has grown,
  // so that the log starts again from its beginning, and empties the log file when idle. Cheap
  // when there is nothing to do.
  void maintain(bool idle) noexcept;

  // Called after each commit that stored at least one event (dispatcher wake-up).
  void set_on_commit(std::function<void()> callback);

 private:
  struct Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True for the error of show()/retry() when no event has the delivery id asked for.
bool is_not_found(const Error& error) noexcept;

}  // namespace tdhook::receiver
