#pragma once
// The inspector's memory (issue 13): the last `keep` requests the receiver answered on its POST
// path, refused ones included, each with the progress of its deliveries as the dispatcher
// reports them. It is both observers: the intake's (begin/settle, on the hot path) and the
// dispatcher's (on_attempt).
//
// A ring that reuses its buffers, so that in steady state the hot path neither allocates nor
// frees for the inspector: every slot keeps its strings and vectors (their capacity) from one
// request to the next. begin() takes an entry of a pool allocated at start (a short mutex of its
// own) and copies the request's views into it, outside any lock; settle() swaps the entry's
// buffers with those of the ring's next slot under the ring's mutex (no copy, no free) and gives
// the entry, now holding the evicted request's buffers, back to the pool. A request begun while
// every entry of the pool is in use is not kept (counted in dropped()).
//
// Readers copy what they need under the ring's mutex (the request into owned strings, on their
// own thread) and build their JSON outside it; the list copies a few dozen requests at a time.
// Thread-safe: every method may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "delivery/observer.hpp"
#include "intake/observer.hpp"

namespace tdhook::receiver::inspect {

// One delivery attempt as the inspector keeps it.
struct AttemptView {
  int number = 0;
  std::int64_t started_at_ms = 0, finished_at_ms = 0;
  bool ok = false;
  std::string error;
  std::string output;  // the tail of a script's output, the first bytes of an HTTP answer
};

enum class SinkState { pending, delivered, retrying, dead };
std::string_view to_string(SinkState state) noexcept;

// What one sink made of a stored request so far.
struct SinkProgress {
  std::string sink;
  SinkState state = SinkState::pending;
  int attempts = 0;
  std::int64_t latency_ms = -1;  // delivered: finished - received
  std::string last_error;
  std::int64_t next_attempt_at_ms = 0;  // retrying: when
  std::vector<AttemptView> history;     // the latest attempts (at most kKeptAttempts)
};

// A request as a reader gets it: a copy of what the ring holds.
struct KeptRequest {
  std::int64_t received_at_ms = 0;
  std::string remote;
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // may be cut (Recorder::body_cap()), or left out (Recorder::Body::summary)
  bool body_read = false;
  int status = 0;
  std::string reason, detail;
  std::string delivery_id;
  std::string event, project_id;
  std::vector<std::string> sinks;
};

struct Kept {
  KeptRequest request;
  std::size_t body_size = 0;  // as received; the kept body may be cut (Recorder::body_cap())
  std::string replay_of;      // a replay from the inspector: the delivery id it delivers again
};

struct Snapshot {
  std::uint64_t id = 0;  // the inspector's number of the request, rising from 1
  Kept kept;
  std::vector<SinkProgress> progress;  // one per kept.request.sinks, in that order
};

// What a Server-Sent-Events stream has seen.
struct Cursor {
  std::uint64_t request = 0;   // the newest request id sent
  std::uint64_t progress = 0;  // the newest progress sequence number sent
};

struct Changes {
  std::vector<std::uint64_t> added;    // new requests, oldest first
  std::vector<std::uint64_t> updated;  // requests whose deliveries progressed (not in added)
  bool gap = false;                    // more happened than one wake-up sends: reload
  bool stopped = false;                // the inspector stops: end the stream
};

class Recorder final : public RequestObserver, public DeliveryObserver {
 public:
  static constexpr std::size_t kKeptAttempts = 20;
  static constexpr std::size_t kKeptOutput = 4096;
  static constexpr std::size_t kMaxChangesPerWake = 200;
  static constexpr std::size_t kPool = 4096;  // requests begun and not yet settled, at most

  // What a reader copies of a request's body: all of it, or only what a summary reads (the
  // body of a request that names no verified event, for the event it claims).
  enum class Body { full, summary };

  explicit Recorder(std::size_t keep);
  ~Recorder() override;
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  Ticket begin(const ObservedRequest& request) noexcept override;
  void settle(Ticket ticket, const ObservedOutcome& outcome) noexcept override;
  void on_attempt(const AttemptReport& report) noexcept override;
  // A replay made by the inspector: kept like a stored request. Returns its id (0 on failure).
  std::uint64_t add_replay(const ObservedRequest& request, const ObservedOutcome& outcome,
                           std::string_view replay_of) noexcept;

  std::size_t keep() const noexcept { return keep_; }
  std::size_t body_cap() const noexcept { return body_cap_; }
  std::uint64_t dropped() const;  // requests not kept: the pool was empty
  std::uint64_t newest() const;
  // Since when every request is in the ring: the start, or the oldest kept once it wrapped.
  std::int64_t covered_since_ms() const;

  // At most `count` kept requests with an id below `before` (0: all), newest first, with their
  // progress.
  std::vector<Snapshot> requests_before(std::uint64_t before, std::size_t count,
                                        Body body = Body::full) const;
  std::optional<Snapshot> get(std::uint64_t id, Body body = Body::full) const;
  // The kept request that stored `delivery_id` (a replay included), if still kept.
  std::optional<std::uint64_t> find_stored(std::string_view delivery_id) const;

  // Server-Sent Events: waits until something happened after `cursor`, `deadline` passes or
  // stop_streams() is called; advances the cursor past what it returns. At most one wake-up
  // per `pace` for each stream, so that a flood of requests is sent in batches.
  Cursor cursor() const;
  Changes wait(Cursor& cursor, std::chrono::steady_clock::time_point deadline,
               std::chrono::steady_clock::time_point not_before);
  // What happened after `cursor`, without waiting (one waiter wakes, each stream polls its own
  // cursor); advances the cursor.
  Changes poll(Cursor& cursor) const;
  void stop_streams();

 private:
  // A request's text in one buffer of pieces, so that an entry reused keeps its memory.
  struct Piece {
    std::size_t at = 0, size = 0;
  };
  struct Entry {
    std::int64_t received_at_ms = 0;
    int status = 0;
    bool body_read = false;
    std::size_t body_size = 0;
    Piece remote, method, target, reason, detail, delivery_id, event, project_id, replay_of;
    std::vector<Piece> headers;  // name, value, name, value, ...
    std::vector<Piece> sinks;
    std::string text;
    std::string body;

    std::string_view view(Piece p) const noexcept { return {text.data() + p.at, p.size}; }
    Piece add(std::string_view s) {
      const Piece p{text.size(), s.size()};
      text.append(s);
      return p;
    }
  };
  // What the sinks made of one request: its items are reused, not freed (count: those in use).
  struct ProgressList {
    std::vector<SinkProgress> items;
    std::size_t count = 0;
    SinkProgress* find(std::string_view sink) noexcept;
    SinkProgress& add(std::string_view sink);
  };
  struct Slot {
    std::uint64_t id = 0;  // 0: never used
    Entry entry;
    ProgressList progress;  // empty until the first attempt is reported
  };
  struct Cell {
    std::uint64_t hash = 0;
    std::uint64_t id = 0;
  };
  // Attempts reported before the intake settled their request (the dispatcher may deliver an
  // event before the store's completion reaches the intake): taken when it is settled.
  struct Early {
    std::uint64_t hash = 0;  // 0: empty
    std::uint64_t stamp = 0;
    std::string delivery_id;
    ProgressList progress;
  };
  static constexpr std::size_t kProbes = 8;
  static constexpr std::size_t kEarly = 4096;
  static constexpr std::size_t kProgressLog = 4096;

  void fill(Entry& entry, const ObservedRequest& request) const;
  void release(std::size_t index) noexcept;
  std::uint64_t file(Ticket ticket, const ObservedOutcome& outcome,
                     std::string_view replay_of) noexcept;
  std::uint64_t publish(Entry& entry) noexcept;
  bool in_ring(std::uint64_t id) const noexcept;
  void collect(Cursor& cursor, Changes& out) const;  // under mu_
  Slot& slot_of(std::uint64_t id) noexcept { return ring_[(id - 1) % keep_]; }
  const Slot& slot_of(std::uint64_t id) const noexcept { return ring_[(id - 1) % keep_]; }
  void index_insert(std::uint64_t hash, std::uint64_t id) noexcept;
  std::optional<std::uint64_t> index_find(std::string_view delivery_id) const noexcept;
  Early& early_cell(std::string_view delivery_id);
  void take_early(std::uint64_t hash, Slot& slot) noexcept;
  Snapshot copy_of(const Slot& slot, Body body) const;
  std::vector<SinkProgress> progress_of(const Slot& slot) const;

  const std::size_t keep_;
  const std::size_t body_cap_;
  const std::int64_t started_ms_;

  // The pool: entries begun and not yet settled are owned by their ticket, outside any lock.
  mutable std::mutex pool_mu_;
  std::vector<Entry> pool_;
  std::vector<std::size_t> free_;  // indexes of pool_, the last freed on top (warm)
  std::uint64_t dropped_ = 0;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Slot> ring_;
  std::vector<Cell> index_;  // delivery id -> request id, for on_attempt
  std::vector<Early> early_;
  std::uint64_t early_stamp_ = 0;
  std::size_t early_count_ = 0;
  std::uint64_t newest_ = 0;
  std::vector<std::uint64_t> progress_log_;  // request ids, by progress sequence number
  std::uint64_t progress_seq_ = 0;
  int listeners_ = 0;
  bool stopping_ = false;
};

}  // namespace tdhook::receiver::inspect
