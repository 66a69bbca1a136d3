// The NATS store with a local fallback (fallback.hpp): put_batch, the forwarding thread, and
// what /metrics and /healthz say of the events that wait.
#include "store/nats/fallback.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "delivery/process.hpp"
#include "store/log/log_store.hpp"
#include "store/nats/nats_store_impl.hpp"
#include "store/record.hpp"

namespace tdhook::receiver {
namespace {

using std::chrono::milliseconds;

// The fallback log's one sink: the stream.
constexpr const char* kStreamSink = "nats";
constexpr std::size_t kForwardBatch = 256;
// After a forward that the stream did not take: the pause before the next try.
constexpr milliseconds kRetryPause{500};
constexpr milliseconds kIdleWait{1000};

// What the fallback log keeps of an event beyond its own fields: the de-duplication key and the
// sinks the event is due to, each as <length>:<bytes>, then the record. A format of our own:
// the log's entries carry no such fields, and these two only travel from put_batch() to the
// forwarder.
void put_field(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::optional<std::string_view> take_field(std::string_view& in) {
  const auto colon = in.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 19) return std::nullopt;
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(in.data(), in.data() + colon, n);
  if (ec != std::errc{} || end != in.data() + colon || n > in.size() - colon - 1) {
    return std::nullopt;
  }
  const auto field = in.substr(colon + 1, n);
  in.remove_prefix(colon + 1 + n);
  return field;
}

std::string wrap(const NewEvent& e) {
  std::string out;
  out.reserve(e.record.size() + e.dedup_key.size() + 64);
  put_field(out, e.dedup_key);
  put_field(out, std::to_string(e.sinks.size()));
  for (const auto& s : e.sinks) put_field(out, s);
  out += e.record;
  return out;
}

// The record of a wrapped entry, and its key and sinks; nullopt when `in` is not one.
struct Unwrapped {
  std::string_view dedup_key, record;
  std::vector<std::string_view> sinks;
};

std::optional<Unwrapped> read_wrapped(std::string_view in) {
  Unwrapped u;
  const auto key = take_field(in);
  const auto count = take_field(in);
  if (!key || !count) return std::nullopt;
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(count->data(), count->data() + count->size(), n);
  if (ec != std::errc{} || end != count->data() + count->size() || n > 4096) return std::nullopt;
  u.dedup_key = *key;
  for (std::size_t i = 0; i < n; ++i) {
    const auto sink = take_field(in);
    if (!sink) return std::nullopt;
    u.sinks.push_back(*sink);
  }
  u.record = in;
  return u;
}

// The event that put_batch() was given, from what the fallback log hands back.
std::optional<NewEvent> unwrap(Delivery& d) {
  const auto u = read_wrapped(d.record);
  if (!u) return std::nullopt;
  NewEvent e;
  e.dedup_key = std::string(u->dedup_key);
  for (const auto s : u->sinks) e.sinks.emplace_back(s);
  e.record = std::string(u->record);
  e.delivery_id = d.delivery_id;
  e.event = d.event;
  e.project_id = d.project_id;
  e.subscription_id = d.subscription_id;
  e.timestamp_ms = d.timestamp_ms;
  e.received_at_ms = d.received_at_ms;
  e.original = std::move(d.original);
  return e;
}

bool taken(PutOutcome o) noexcept { return o == PutOutcome::stored || o == PutOutcome::duplicate; }

class FallbackStore final : public Store {
 public:
  FallbackStore(std::unique_ptr<nats::NatsStore> nats, std::unique_ptr<Store> local,
                FallbackOptions options, const Logger& log)
      : nats_(std::move(nats)), local_(std::move(local)), options_(std::move(options)), log_(log) {
    if (const auto waiting = local_->pending_total(); waiting > 0) {
      log_.warn(
          "fallback: events kept locally by an earlier run; forwarding them to the stream "
          "before new events",
          LogFields().add("waiting", waiting));
    }
    forwarder_ = std::thread([this] { forward_loop(); });
  }

  ~FallbackStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (forwarder_.joinable()) forwarder_.join();
  }

  FallbackStore(const FallbackStore&) = delete;
  FallbackStore& operator=(const FallbackStore&) = delete;

  std::vector<PutResult> put_batch(std::vector<NewEvent> events) override {
    std::vector<PutResult> results(events.size());
    std::vector<std::size_t> local_idx;
    // Behind events that wait locally, new ones wait too: the stream gets them in arrival order.
    if (local_->pending_total() == 0) {
      results = nats_->publish(events);
      for (std::size_t i = 0; i < results.size(); ++i) {
        if (results[i].outcome == PutOutcome::failed) local_idx.push_back(i);
      }
    } else {
      for (std::size_t i = 0; i < events.size(); ++i) local_idx.push_back(i);
    }
    if (local_idx.empty()) return results;
    const std::string reason = results[local_idx.front()].error.empty()
                                   ? std::string("events wait locally already")
                                   : results[local_idx.front()].error;
    const std::int64_t now = now_ms();
    const std::int64_t oldest = oldest_waiting_ms_.load();
    if (oldest > 0 && now - oldest > options_.max_age.count()) {
      // The fallback covers an outage up to --store-fallback-max: past it the stream's
      // duplicate window could no longer sort out a retry that went elsewhere.
      for (const auto i : local_idx) {
        results[i] = PutResult{PutOutcome::failed,
                               {},
                               "the stream has not taken events for longer than "
                               "--store-fallback-max " +
                                   format_seconds(options_.max_age)};
      }
      return results;
    }
    std::vector<NewEvent> kept;
    kept.reserve(local_idx.size());
    for (const auto i : local_idx) {
      NewEvent& e = events[i];
      NewEvent w;
      w.record = wrap(e);
      w.delivery_id = std::move(e.delivery_id);
      w.dedup_key = std::move(e.dedup_key);
      w.event = std::move(e.event);
      w.project_id = std::move(e.project_id);
      w.subscription_id = std::move(e.subscription_id);
      w.timestamp_ms = e.timestamp_ms;
      w.received_at_ms = e.received_at_ms;
      w.original = std::move(e.original);
      w.sinks = {kStreamSink};
      kept.push_back(std::move(w));
    }
    auto local_results = local_->put_batch(std::move(kept));
    std::int64_t stored = 0;
    for (std::size_t k = 0; k < local_idx.size(); ++k) {
      auto& r = local_results[k];
      if (r.outcome == PutOutcome::stored) ++stored;
      if (r.outcome == PutOutcome::failed) r.error = "fallback: " + r.error;
      results[local_idx[k]] = std::move(r);
    }
    if (stored > 0) {
      kept_total_.fetch_add(static_cast<std::uint64_t>(stored));
      std::int64_t expected = 0;
      oldest_waiting_ms_.compare_exchange_strong(expected, now);
      bool was_waiting = false;
      {
        std::lock_guard lock(mu_);
        was_waiting = waiting_;
        waiting_ = true;
        kicked_ = true;
      }
      cv_.notify_all();
      if (!was_waiting) {
        log_.warn("fallback: the stream does not take events; keeping them locally until it does",
                  LogFields().add("reason", reason));
      }
    }
    return results;
  }

  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now,
                                    std::size_t limit) override {
    return nats_->due(sink, now, limit);
  }
  std::optional<std::int64_t> next_due(const std::string& sink) override {
    return nats_->next_due(sink);
  }
  Status mark_batch(const std::vector<Mark>& marks) override { return nats_->mark_batch(marks); }
  Result<std::int64_t> retry(const std::optional<std::string>& id, bool all_dead) override {
    return nats_->retry(id, all_dead);
  }
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) override {
    return nats_->purge_delivered(older_than_ms);
  }
  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) override {
    return nats_->list(filter);
  }
  // An event that still waits here is not in the stream yet: it is shown from the fallback.
  Result<Details> show(const std::string& delivery_id) override {
    auto shown = nats_->show(delivery_id);
    if (shown || !is_not_found(shown.error())) return shown;
    auto local = local_->show(delivery_id);
    if (!local) return shown;
    if (const auto u = read_wrapped(local->record)) local->record = std::string(u->record);
    return local;
  }
  Result<StoreCounts> counts(const std::optional<std::string>& sink) override {
    return nats_->counts(sink);
  }
  std::int64_t pending_total() const noexcept override {
    return nats_->pending_total() + local_->pending_total();
  }
  bool writable() const noexcept override { return nats_->writable() || local_->writable(); }
  std::uint64_t commits() const noexcept override { return nats_->commits() + local_->commits(); }
  std::size_t writers() const noexcept override { return nats_->writers(); }
  std::uint64_t disk_bytes() const noexcept override {
    return nats_->disk_bytes() + local_->disk_bytes();
  }
  std::uint64_t max_event_bytes() const noexcept override {
    return std::min(nats_->max_event_bytes(), local_->max_event_bytes());
  }
  void maintain(bool idle) noexcept override { nats_->maintain(idle); }
  void set_on_commit(std::function<void()> callback) override {
    nats_->set_on_commit(std::move(callback));
  }

  std::string metrics_text() const override {
    std::ostringstream out;
    out << nats_->metrics_text()
        << "# HELP tdhook_store_fallback_waiting events kept locally that the stream has not "
           "taken yet\n"
           "# TYPE tdhook_store_fallback_waiting gauge\n"
        << "tdhook_store_fallback_waiting " << local_->pending_total() << '\n'
        << "# HELP tdhook_store_fallback_oldest_age_seconds how long the oldest waiting event "
           "has waited\n"
           "# TYPE tdhook_store_fallback_oldest_age_seconds gauge\n"
        << "tdhook_store_fallback_oldest_age_seconds " << oldest_age_ms() / 1000.0 << '\n'
        << "# HELP tdhook_store_fallback_kept_total events committed locally because the stream "
           "did not take them\n"
           "# TYPE tdhook_store_fallback_kept_total counter\n"
        << "tdhook_store_fallback_kept_total " << kept_total_.load() << '\n'
        << "# HELP tdhook_store_fallback_forwarded_total events kept locally that the stream "
           "then took\n"
           "# TYPE tdhook_store_fallback_forwarded_total counter\n"
        << "tdhook_store_fallback_forwarded_total " << forwarded_total_.load() << '\n'
        << "# HELP tdhook_store_fallback_late_total events forwarded after "
           "--store-fallback-max (a retry elsewhere may be a second event)\n"
           "# TYPE tdhook_store_fallback_late_total counter\n"
        << "tdhook_store_fallback_late_total " << late_total_.load() << '\n';
    return out.str();
  }

  std::string health_json() const override {
    std::string json = nats_->health_json();
    if (json.empty() || json.back() != '}') return json;
    json.pop_back();
    const auto waiting = local_->pending_total();
    std::ostringstream out;
    out << json << R"(,"fallback":{"waiting":)" << waiting << R"(,"oldest_age_ms":)"
        << oldest_age_ms() << R"(,"kept":)" << kept_total_.load() << R"(,"forwarded":)"
        << forwarded_total_.load() << R"(,"late":)" << late_total_.load() << R"(,"a_200_means":")"
        << (waiting > 0 ? "written to this receiver's fallback log (events wait there for the "
                          "stream)"
                        : "as the stream's")
        << "\"}}";
    return out.str();
  }

 private:
  std::int64_t oldest_age_ms() const noexcept {
    const auto oldest = oldest_waiting_ms_.load();
    return oldest > 0 ? std::max<std::int64_t>(0, now_ms() - oldest) : 0;
  }

  void forward_loop() {
    ::pthread_setname_np(::pthread_self(), "tdhook-fwd");
    milliseconds wait{0};
    std::int64_t last_upkeep = 0;
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, wait, [this] { return stopping_ || kicked_; });
        if (stopping_) return;
        kicked_ = false;
      }
      const std::int64_t now = now_ms();
      if (now - last_upkeep >= 1000) {
        last_upkeep = now;
        local_->maintain(local_->pending_total() == 0);
      }
      wait = forward_once(now);
    }
  }

  // One batch from the fallback to the stream; returns how long to wait before the next.
  milliseconds forward_once(std::int64_t now) {
    if (local_->pending_total() == 0) {
      finish_outage();
      return kIdleWait;
    }
    if (!nats_->connected()) return kRetryPause;
    auto due = local_->due(kStreamSink, now, kForwardBatch);
    if (!due) {
      log_.error("fallback: cannot read the fallback log",
                 LogFields().add("error", due.error().detail));
      return kIdleWait;
    }
    if (due->empty()) return kRetryPause;
    oldest_waiting_ms_.store(std::max<std::int64_t>(1, due->front().received_at_ms));
    std::vector<NewEvent> events;
    std::vector<std::size_t> of;  // events[k] is (*due)[of[k]]
    std::vector<Mark> marks;
    marks.reserve(due->size());
    for (std::size_t i = 0; i < due->size(); ++i) {
      auto& d = (*due)[i];
      auto e = unwrap(d);
      if (!e) {
        // Not written by put_batch(): kept as a dead letter of the fallback log, never dropped.
        log_.error("fallback: an entry cannot be read back; kept as a dead letter",
                   LogFields().add("delivery_id", d.delivery_id));
        Mark m;
        m.delivery = &d;
        m.attempt = Attempt{d.attempts + 1, now, now, false, "not a fallback entry"};
        m.dead = true;
        marks.push_back(std::move(m));
        continue;
      }
      of.push_back(i);
      events.push_back(std::move(*e));
    }
    const auto results = nats_->publish(events);
    const std::int64_t done = now_ms();
    std::uint64_t forwarded = 0, late = 0;
    bool failed = false;
    for (std::size_t k = 0; k < events.size(); ++k) {
      const Delivery& d = (*due)[of[k]];
      Mark m;
      m.delivery = &d;
      m.attempt.number = d.attempts + 1;
      m.attempt.started_at_ms = now;
      m.attempt.finished_at_ms = done;
      m.attempt.ok = taken(results[k].outcome);
      if (m.attempt.ok) {
        ++forwarded;
        if (done - d.received_at_ms > options_.max_age.count()) {
          ++late;
          log_.warn(
              "fallback: forwarded after --store-fallback-max; a retry of it that reached "
              "another receiver may be a second event",
              LogFields().add("delivery_id", d.delivery_id));
        }
      } else {
        failed = true;
        m.attempt.error = results[k].error;
        m.next_attempt_at_ms = now;  // first again at the next try: arrival order
      }
      marks.push_back(std::move(m));
    }
    if (auto marked = local_->mark_batch(marks); !marked) {
      log_.error(
          "fallback: cannot record what was forwarded (it may be forwarded again: the "
          "stream takes it as a duplicate)",
          LogFields().add("error", marked.error().detail));
    }
    forwarded_total_.fetch_add(forwarded);
    late_total_.fetch_add(late);
    return failed ? kRetryPause : milliseconds(0);
  }

  void finish_outage() {
    oldest_waiting_ms_.store(0);
    bool was_waiting = false;
    {
      std::lock_guard lock(mu_);
      was_waiting = waiting_;
      waiting_ = false;
    }
    if (was_waiting) {
      log_.info("fallback: every event kept locally is in the stream",
                LogFields()
                    .add("forwarded_total", static_cast<std::int64_t>(forwarded_total_.load()))
                    .add("late_total", static_cast<std::int64_t>(late_total_.load())));
    }
  }

  std::unique_ptr<nats::NatsStore> nats_;
  std::unique_ptr<Store> local_;
  FallbackOptions options_;
  Logger log_;
  std::atomic<std::uint64_t> kept_total_{0}, forwarded_total_{0}, late_total_{0};
  // received_at of the oldest waiting event (ms since the epoch); 0 when none waits.
  std::atomic<std::int64_t> oldest_waiting_ms_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, kicked_ = false, waiting_ = false;
  std::thread forwarder_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_nats_store_with_fallback(const NatsStoreOptions& nats,
                                                             const FallbackOptions& options,
                                                             const Logger& log) {
  auto opened = open_nats_store(nats, log);
  if (!opened) return std::move(opened).error();
  // open_nats_store() makes a nats::NatsStore; its publish() is what the fallback needs.
  std::unique_ptr<nats::NatsStore> stream(static_cast<nats::NatsStore*>(opened->release()));
  if (stream->duplicate_window() < options.max_age) {
    return Error{ErrorCode::invalid_config,
                 "--store-fallback-max " + format_seconds(options.max_age) +
                     " is longer than the stream's duplicate window (" +
                     format_seconds(stream->duplicate_window()) +
                     "): an event kept locally that long could be stored twice when it is "
                     "forwarded; make --dedup-window at least as long"};
  }
  LogStoreOptions local;
  local.store.data_dir = options.dir;
  local.store.durability = options.durability;
  local.store.dedup_window = options.dedup_window;
  local.store.max_pending = options.max_pending;
  local.store.sinks = {kStreamSink};
  auto fallback = open_log_store(local, log);
  if (!fallback) {
    return Error{
        ErrorCode::invalid_config,
        "cannot open the fallback log in " + options.dir.string() + ": " + fallback.error().detail};
  }
  return std::unique_ptr<Store>(
      new FallbackStore(std::move(stream), std::move(*fallback), options, log));
}

}  // namespace tdhook::receiver
