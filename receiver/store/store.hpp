#pragma once
// The event store: every verified event is committed here before its 200 is sent, and every
// sink delivers from here. This header is the interface that the HTTP front end (intake/), the
// dispatcher (delivery/) and `tdhook spool` see; implementations live beside it:
//   log/     the embedded default, an append-only event log in the data directory;
//   sqlite/  the SQLite spool of tdhook <= 0.4, kept to import an old spool.db.
//
// Thread-safety: every method may be called from any thread.
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
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/pattern.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

// process: written to the OS before answering (one write() per batch); survives a crash of the
// process. power: also synced to the disk (one fdatasync per batch); survives power loss.
enum class Durability { process, power };

// What opening the embedded store needs (open_store(), store/log/log_store.hpp).
struct StoreOptions {
  std::filesystem::path data_dir;  // created if missing
  Durability durability = Durability::process;
  std::chrono::milliseconds dedup_window{24 * 3600 * 1000};
  std::size_t max_pending = 100000;  // put_batch() answers full beyond this many deliveries
  // The configured sinks' names: the deliveries an event is due to are among these.
  std::vector<std::string> sinks;
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
  // The request as Tiledesk sent it (build_original(), record.hpp), kept only when a forward:
  // sink is due to the event; empty otherwise.
  std::string original;
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
  std::int64_t event_row = 0;  // the store's own number of the event (log: its sequence number)
  std::string delivery_id;
  std::string sink;
  std::string event;
  std::string project_id;
  std::string subscription_id;
  std::int64_t timestamp_ms = 0;
  std::string record;
  int attempts = 0;  // attempts made so far
  std::int64_t received_at_ms = 0;
  std::string original;  // NewEvent::original, as stored ("" when none was kept)
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
  std::optional<std::int64_t> since_ms, until_ms;  // on received_at, both inclusive
  std::size_t limit = 1000;
  // The newest `limit` rows, newest first (the inspector's list); else the oldest, oldest first.
  // The embedded log then reads only as many events as it returns, from its end. (The SQLite
  // spool, kept only to import an old spool.db, ignores it.)
  bool newest_first = false;
};

// A ListFilter ready to apply: its event pattern parsed once.
class ListMatcher {
 public:
  static Result<ListMatcher> make(const ListFilter& filter);
  bool operator()(const DeliveryInfo& d) const;
  std::size_t limit() const noexcept { return filter_.limit == 0 ? SIZE_MAX : filter_.limit; }

 private:
  ListFilter filter_;
  std::optional<PatternSet> pattern_;
};

struct StoreCounts {
  std::int64_t pending = 0, delivered = 0, dead = 0;
};

// One outcome of a delivery attempt, as the dispatcher records it.
struct Mark {
  const Delivery* delivery = nullptr;
  Attempt attempt;
  std::int64_t next_attempt_at_ms = 0;  // a failure that is not dead: when to try again
  bool dead = false;
};

// The record and every attempt of one delivery id (all sinks).
struct Details {
  std::string record;
  std::string original;  // NewEvent::original, as stored
  std::vector<DeliveryInfo> deliveries;
  std::vector<std::pair<std::string, Attempt>> attempts;  // (sink, attempt)
};

class Store {
 public:
  virtual ~Store() = default;

  // Stores several events with one write (and with --durability power one sync); one result per
  // event, in order: stored, duplicate (within the window), full (--max-pending) or failed (the
  // disk). Never throws. Returns once the events are as durable as the store promises.
  virtual std::vector<PutResult> put_batch(std::vector<NewEvent> events) = 0;
  // put_batch of one event.
  PutResult put(NewEvent event);

  // Up to `limit` pending deliveries of `sink` whose next attempt is due at `now_ms`, oldest
  // first.
  virtual Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                            std::size_t limit) = 0;
  // Earliest next attempt of a pending delivery of `sink`, if any.
  virtual std::optional<std::int64_t> next_due(const std::string& sink) = 0;

  // Outcomes of attempts: a success is delivered; a failure stays pending until its
  // next_attempt_at_ms, or becomes dead. All or nothing.
  virtual Status mark_batch(const std::vector<Mark>& marks) = 0;
  Status mark_delivered(const Delivery& d, const Attempt& attempt);
  Status mark_failed(const Delivery& d, const Attempt& attempt, std::int64_t next_attempt_at_ms,
                     bool dead);

  // Undelivered deliveries of `delivery_id` (dead or waiting) and/or every dead delivery
  // (`all_dead`) back to pending, due now; attempts are kept. A missing id: is_not_found().
  virtual Result<std::int64_t> retry(const std::optional<std::string>& delivery_id,
                                     bool all_dead) = 0;
  // Removes delivered events older than `older_than_ms` and dedup keys older than the window.
  // Returns the number of events removed (or made removable).
  virtual Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) = 0;

  virtual Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) = 0;
  // A missing id: is_not_found().
  virtual Result<Details> show(const std::string& delivery_id) = 0;
  virtual Result<StoreCounts> counts(const std::optional<std::string>& sink) = 0;

  virtual std::int64_t pending_total() const noexcept = 0;  // cheap, kept in memory
  // False after a disk failure, until a write works again.
  virtual bool writable() const noexcept = 0;
  virtual std::uint64_t commits() const noexcept = 0;  // batches written
  // How many put_batch() calls may usefully run at once (SpoolWriter's threads).
  virtual std::size_t writers() const noexcept { return 1; }
  // Bytes the store holds on disk (segments), for /metrics; 0 where it cannot tell cheaply.
  virtual std::uint64_t disk_bytes() const noexcept { return 0; }
  // The largest event (record plus original) put_batch() can take; larger ones fail. The
  // receiver lowers its body limit to fit (serve(), main.cpp).
  virtual std::uint64_t max_event_bytes() const noexcept { return UINT64_MAX; }
  // Lines for /metrics (Prometheus text) and a JSON object for /healthz's "store" member; empty
  // where the store has nothing of its own to add.
  virtual std::string metrics_text() const { return {}; }
  virtual std::string health_json() const { return {}; }
  // Called by the writing thread between batches (`idle`: nothing written for a while).
  virtual void maintain(bool /*idle*/) noexcept {}
  // Called after each batch that stored at least one event (dispatcher wake-up).
  virtual void set_on_commit(std::function<void()> callback) = 0;
};

// The error of show()/retry() when no event has the delivery id asked for, and its test.
Error not_found_error(const std::string& delivery_id);
bool is_not_found(const Error& error) noexcept;

}  // namespace tdhook::receiver
