#pragma once
// The inspector's memory (issue 13): the last `keep` requests the receiver answered on its POST
// path, refused ones included, each with the progress of its deliveries as the dispatcher
// reports them. It is both observers: the intake's (on_request, on the hot path) and the
// dispatcher's (on_attempt).
//
// On the hot path (the store's writer thread reports stored events) on_request() only swaps the
// request into an empty slot of a staging ring allocated at start, under a short mutex of its
// own: no JSON, no allocation, no free (except for a body over the kept size, cut once). The
// recorder's thread takes what is staged every few milliseconds (kFilingPace), files it in the
// ring of kept requests, frees what those slots held and wakes the Server-Sent-Events streams.
// A request staged while the staging ring is full is not kept (counted in dropped()). A kept
// request is never changed: readers take shared pointers to them and build their JSON outside
// the lock.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
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

// A request as kept: never changed once kept.
struct Kept {
  ObservedRequest request;
  std::size_t body_size = 0;  // as received; the kept body may be cut (Recorder::body_cap())
  std::string replay_of;      // a replay from the inspector: the delivery id it delivers again
};

struct Snapshot {
  std::uint64_t id = 0;  // the inspector's number of the request, rising from 1
  std::shared_ptr<const Kept> kept;
  std::vector<SinkProgress> progress;  // one per kept->request.sinks, in that order
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
  static constexpr std::size_t kStaged = 4096;  // requests staged between two filings
  static constexpr auto kFilingPace = std::chrono::milliseconds(10);

  explicit Recorder(std::size_t keep);
  ~Recorder() override;  // files what is staged, stops the thread
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  void on_request(ObservedRequest&& request) noexcept override;
  void on_attempt(const AttemptReport& report) noexcept override;
  // A replay made by the inspector: kept like a stored request. Returns its id (0 on failure).
  std::uint64_t add_replay(ObservedRequest request, std::string replay_of) noexcept;

  std::size_t keep() const noexcept { return keep_; }
  std::size_t body_cap() const noexcept { return body_cap_; }
  std::uint64_t dropped() const;  // requests not kept: the staging ring was full
  // Files what is staged now (tests; the thread does it every kFilingPace).
  void flush();
  std::uint64_t newest() const;
  // Since when every request is in the ring: the start, or the oldest kept once it wrapped.
  std::int64_t covered_since_ms() const;

  // Kept requests with an id below `before` (0: all), newest first; progress not included.
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const Kept>>> requests_before(
      std::uint64_t before) const;
  std::optional<Snapshot> get(std::uint64_t id) const;
  // The kept request that stored `delivery_id` (a replay included), if still kept.
  std::optional<std::uint64_t> find_stored(const std::string& delivery_id) const;

  // Server-Sent Events: waits until something happened after `cursor`, `deadline` passes or
  // stop_streams() is called; advances the cursor past what it returns. At most one wake-up
  // per `pace` for each stream, so that a flood of requests is sent in batches.
  Cursor cursor() const;
  Changes wait(Cursor& cursor, std::chrono::steady_clock::time_point deadline,
               std::chrono::steady_clock::time_point not_before);
  void stop_streams();

 private:
  struct Slot {
    std::uint64_t id = 0;  // 0: never used
    std::shared_ptr<const Kept> kept;
    std::vector<SinkProgress> progress;  // empty until the first attempt is reported
  };
  struct Cell {
    std::uint64_t hash = 0;
    std::uint64_t id = 0;
  };
  // Attempts reported before the intake reported their request (the dispatcher may deliver an
  // event before the store's completion reaches the intake): taken by on_request.
  struct Early {
    std::uint64_t hash = 0;  // 0: empty
    std::uint64_t stamp = 0;
    std::string delivery_id;
    std::vector<SinkProgress> progress;
  };
  static constexpr std::size_t kProbes = 8;
  static constexpr std::size_t kEarly = 4096;
  static constexpr std::size_t kProgressLog = 4096;

  std::uint64_t publish(std::shared_ptr<const Kept> kept, std::shared_ptr<const Kept>& retired,
                        std::vector<SinkProgress>& old_progress) noexcept;
  void run();
  std::size_t take_staged();  // moves what is staged into batch_; returns how many
  void file(std::size_t count);
  bool in_ring(std::uint64_t id) const noexcept;
  Slot& slot_of(std::uint64_t id) noexcept { return ring_[(id - 1) % keep_]; }
  const Slot& slot_of(std::uint64_t id) const noexcept { return ring_[(id - 1) % keep_]; }
  void index_insert(std::uint64_t hash, std::uint64_t id) noexcept;
  std::optional<std::uint64_t> index_find(const std::string& delivery_id) const noexcept;
  std::vector<SinkProgress> progress_of(const Slot& slot) const;
  void take_early(std::uint64_t hash, Slot& slot) noexcept;

  const std::size_t keep_;
  const std::size_t body_cap_;
  const std::int64_t started_ms_;

  // Staging: written by on_request, emptied by the thread.
  mutable std::mutex stage_mu_;
  std::condition_variable stage_cv_;
  std::vector<ObservedRequest> staged_;
  std::vector<std::size_t> staged_sizes_;
  std::size_t staged_first_ = 0, staged_count_ = 0;
  std::uint64_t dropped_ = 0;
  bool filer_idle_ = false;  // the thread waits for a request (no pacing)
  bool filer_stop_ = false;
  std::mutex filing_mu_;                // one filing at a time (the thread, flush())
  std::vector<ObservedRequest> batch_;  // what one filing takes from staged_ (empty between)
  std::vector<std::size_t> batch_sizes_;

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
  std::thread filer_;  // last: started once everything else is set up
};

}  // namespace tdhook::receiver::inspect
