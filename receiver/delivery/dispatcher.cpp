#include "delivery/dispatcher.hpp"

#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <system_error>
#include <thread>

#include "delivery/process.hpp"
#include "delivery/sink.hpp"

namespace tdhook::receiver {
namespace {

using std::chrono::milliseconds;

// An idle loop looks at the spool this often even without wake(): `tdhook spool retry` runs in
// another process and cannot wake us.
constexpr milliseconds idle_recheck{1000};
// After a spool error (disk trouble), wait this long before asking again.
constexpr milliseconds spool_error_pause{1000};
constexpr std::int64_t retry_delay_cap_ms = 3600 * 1000;

// Wall time, for what people read: attempt times, delivery latency.
std::int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The clock of retry schedules. The spool's next_attempt_at is wall time: it must mean the same
// after a restart, and the spool itself makes new events (and `tdhook spool retry`) due at the
// wall clock's now. But this clock never runs backwards: when the wall clock is set back, it
// goes on at the steady clock's pace until the wall clock catches up, so a retry due in 2 s is
// still due in 2 s, not in an hour and 2 s. When the wall clock is set forward it follows at
// once: what was scheduled falls due early, never late. Never behind the wall clock, it never
// delays what the spool scheduled on the wall clock either.
std::int64_t schedule_ms() {
  static std::mutex mu;
  static bool anchored = false;
  static std::int64_t anchor_wall = 0;
  static std::chrono::steady_clock::time_point anchor_steady;
  const std::lock_guard lock(mu);  // clocks read inside: one thread's values never go backwards
  const auto steady = std::chrono::steady_clock::now();
  const std::int64_t wall = wall_ms();
  const std::int64_t carried =
      anchor_wall + std::chrono::duration_cast<milliseconds>(steady - anchor_steady).count();
  if (!anchored || wall >= carried) {
    anchored = true;
    anchor_wall = wall;
    anchor_steady = steady;
    return wall;
  }
  return carried;
}

// retry_base * 2^(attempt-1), capped at an hour, with "equal jitter": at least half the delay
// (retries still back off), the other half random (a burst of failures does not retry in step).
std::int64_t retry_delay_ms(milliseconds base, int attempt) {
  const double doubled =
      static_cast<double>(base.count()) * std::ldexp(1.0, std::clamp(attempt - 1, 0, 40));
  const auto delay =
      static_cast<std::int64_t>(std::min(doubled, static_cast<double>(retry_delay_cap_ms)));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> jitter(0, delay / 2);
  return delay - delay / 2 + jitter(rng);
}

class SinkRunner {
 public:
  SinkRunner(SinkConfig config, std::unique_ptr<Sink> sink, Store& spool, const Logger& log,
             Metrics& metrics, DeliveryObserver* observer)
      : config_(std::move(config)),
        concurrency_(static_cast<std::size_t>(sink_concurrency(config_))),
        sink_(std::move(sink)),
        spool_(spool),
        log_(log),
        metrics_(metrics),
        observer_(observer) {}
  SinkRunner(const SinkRunner&) = delete;
  SinkRunner& operator=(const SinkRunner&) = delete;
  ~SinkRunner() {
    request_stop();
    join();
  }

  void start() {
    if (concurrent()) {
      for (std::size_t i = 0; i < concurrency_; ++i) workers_.emplace_back([this] { work(); });
    }
    loop_thread_ = std::thread([this] { loop(); });
  }

  void wake() {
    {
      const std::lock_guard lock(mu_);
      woken_ = true;
    }
    loop_cv_.notify_all();
  }

  void request_reopen() noexcept { sink_->request_reopen(); }

  void request_stop() {
    {
      const std::lock_guard lock(mu_);
      stopping_ = true;
    }
    loop_cv_.notify_all();
    work_cv_.notify_all();
  }

  // Returns once the running deliveries have finished (or their scripts timed out).
  void join() {
    if (loop_thread_.joinable()) loop_thread_.join();
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
    workers_.clear();
    if (!record_unrecorded()) {
      log_.error(
          "spool: delivery outcomes could not be recorded; those events will be delivered "
          "again at the next start",
          LogFields().add("sink", config_.name).add("count", unrecorded_count()));
    }
  }

 private:
  // Only a per-event exec sink and an http sink run deliveries side by side. A file, stdout or
  // exec-stream sink delivers batches in order from this one thread, whatever
  // --exec-concurrency says.
  bool concurrent() const noexcept { return concurrency_ > 1; }

  void loop() {
    ::pthread_setname_np(::pthread_self(), "tdhook-sink");
    for (;;) {
      {
        const std::lock_guard lock(mu_);
        if (stopping_) return;
        woken_ = false;
      }
      // Outcomes the spool could not record come first: until they are recorded, those
      // deliveries still look due, and delivering on would hand them to the sink again.
      bool spool_ok = record_unrecorded();
      const bool more =
          spool_ok && (concurrent() ? feed_workers(spool_ok) : deliver_inline(spool_ok));
      if (!more) wait_for_work(spool_ok);
    }
  }

  // exec_concurrency or http_concurrency 1 (and every stdout, file and exec-stream sink):
  // deliver in this thread, in arrival order.
  // true when a full batch went out, so that more may be due right now.
  bool deliver_inline(bool& spool_ok) {
    const std::size_t limit = sink_->batch_limit();
    auto due = spool_.due(config_.name, schedule_ms(), limit);
    if (!due) {
      spool_ok = false;
      log_.error("spool: cannot read due deliveries",
                 LogFields().add("sink", config_.name).add("error", due.error().detail));
      return false;
    }
    if (due->empty()) return false;
    const std::int64_t started = wall_ms();
    const auto outcomes = sink_->deliver(*due);
    const std::int64_t finished = wall_ms();
    const std::size_t count = due->size();
    const bool recorded = settle_batch(*due, outcomes, started, finished);
    metrics_.set_spool_pending(spool_.pending_total());
    if (!recorded) spool_ok = false;
    return recorded && count == limit;
  }

  // sink_concurrency N > 1: hand due deliveries that are not already running to the workers.
  bool feed_workers(bool& spool_ok) {
    std::size_t running = 0;
    // What runs now: a delivery that finishes between this snapshot and the spool read below is
    // still pending in that read, and must not be handed out again.
    std::set<std::int64_t> running_before;
    {
      const std::lock_guard lock(mu_);
      running = in_flight_.size();
      running_before = in_flight_;
    }
    const std::size_t capacity = concurrency_ - running;
    if (capacity == 0) return false;
    // Running deliveries are still pending in the spool, so ask for enough to skip them.
    auto due = spool_.due(config_.name, schedule_ms(), capacity + running);
    if (!due) {
      spool_ok = false;
      log_.error("spool: cannot read due deliveries",
                 LogFields().add("sink", config_.name).add("error", due.error().detail));
      return false;
    }
    {
      const std::lock_guard lock(mu_);
      for (auto& d : *due) {
        if (in_flight_.size() >= concurrency_) break;
        if (running_before.count(d.event_row) != 0) continue;
        if (in_flight_.insert(d.event_row).second) queue_.push_back(std::move(d));
      }
    }
    work_cv_.notify_all();
    return false;
  }

  void work() {
    for (;;) {
      Delivery d;
      {
        std::unique_lock lock(mu_);
        work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;  // queued, not started: stays pending in the spool
        d = std::move(queue_.front());
        queue_.pop_front();
      }
      const std::int64_t started = wall_ms();
      const auto outcomes = sink_->deliver({d});
      settle(d, outcomes.at(0), started, wall_ms());
      metrics_.set_spool_pending(spool_.pending_total());
      {
        const std::lock_guard lock(mu_);
        in_flight_.erase(d.event_row);
        woken_ = true;
      }
      loop_cv_.notify_all();
    }
  }

  void wait_for_work(bool spool_ok) {
    milliseconds wait = spool_ok ? idle_recheck : spool_error_pause;
    if (spool_ok) {
      if (const auto next = spool_.next_due(config_.name)) {
        const std::int64_t until = *next - schedule_ms();
        bool running = false;
        {
          const std::lock_guard lock(mu_);
          running = !in_flight_.empty();
        }
        // Due already: either it arrived just now (look again at once) or it is running (a
        // worker wakes us when it finishes).
        if (until <= 0 && !running) return;
        if (until > 0) wait = std::min(wait, milliseconds(until));
      }
    }
    std::unique_lock lock(mu_);
    loop_cv_.wait_for(lock, wait, [this] { return stopping_ || woken_; });
  }

  // An outcome to write to the spool: the attempt, and for a failure when to try again.
  struct Outcome {
    Delivery delivery;
    Attempt attempt;
    std::int64_t next_attempt_at = 0;
    bool dead = false;
    std::int64_t delay_ms = 0;  // until the next attempt (for the log)
  };

  Status record(const Outcome& o) {
    return o.attempt.ok ? spool_.mark_delivered(o.delivery, o.attempt)
                        : spool_.mark_failed(o.delivery, o.attempt, o.next_attempt_at, o.dead);
  }

  // Records `o`, or keeps it for record_unrecorded() when the spool cannot write (disk full).
  // False when it was kept.
  bool record_or_keep(Outcome o) {
    const std::lock_guard lock(unrecorded_mu_);
    if (unrecorded_.empty()) {
      auto s = record(o);
      if (s) return true;
      log_.error("spool: cannot record a delivery outcome; kept until the spool can write it",
                 fields(o.delivery).add("delivered", o.attempt.ok).add("error", s.error().detail));
    }
    unrecorded_.push_back(std::move(o));
    return false;
  }

  // Writes the outcomes kept by record_or_keep(), oldest first. True when none is left.
  bool record_unrecorded() {
    const std::lock_guard lock(unrecorded_mu_);
    std::size_t done = 0;
    while (done < unrecorded_.size() && record(unrecorded_[done])) ++done;
    if (done > 0) {
      unrecorded_.erase(unrecorded_.begin(), unrecorded_.begin() + static_cast<long>(done));
      log_.info(
          "spool: kept delivery outcomes recorded",
          LogFields().add("sink", config_.name).add("count", static_cast<std::int64_t>(done)));
    }
    return unrecorded_.empty();
  }

  std::int64_t unrecorded_count() {
    const std::lock_guard lock(unrecorded_mu_);
    return static_cast<std::int64_t>(unrecorded_.size());
  }

  // The outcome to record for one attempt.
  Outcome assess(Delivery d, const DeliveryOutcome& outcome, std::int64_t started,
                 std::int64_t finished) {
    const Attempt attempt{d.attempts + 1, started, finished, outcome.ok, outcome.error};
    if (outcome.ok) return Outcome{std::move(d), attempt, 0, false};
    const bool dead = attempt.number >= config_.retry_max;
    const std::int64_t delay = dead ? 0 : retry_delay_ms(config_.retry_base, attempt.number);
    return Outcome{std::move(d), attempt, schedule_ms() + delay, dead, delay};
  }

  // Metrics and log lines of an outcome, once it is recorded (or kept to be): whoever reads
  // the metrics then finds the spool saying the same.
  void report(const Outcome& o) {
    const auto& d = o.delivery;
    if (o.attempt.ok) {
      metrics_.count_delivery(config_.name, "delivered");
      if (d.received_at_ms > 0) {
        metrics_.observe_delivery_latency(
            config_.name,
            static_cast<double>(o.attempt.finished_at_ms - d.received_at_ms) / 1000.0);
      }
      if (log_.enabled(LogLevel::debug)) {
        log_.debug("delivered", fields(d).add("attempt", o.attempt.number));
      }
      return;
    }
    metrics_.count_delivery(config_.name, o.dead ? "dead" : "retried");
    auto f = fields(d).add("attempt", o.attempt.number).add("error", o.attempt.error);
    if (o.dead) {
      log_.error("delivery dead-lettered", f);
    } else {
      log_.warn("delivery failed, will retry", f.add("retry_in_ms", o.delay_ms));
    }
  }

  // Tells the observer (the inspector), if any, of an attempt whose outcome is settled.
  void observe(const Outcome& o, const DeliveryOutcome& outcome) noexcept {
    if (observer_ == nullptr) return;
    try {
      AttemptReport r;
      r.delivery_id = o.delivery.delivery_id;
      r.sink = config_.name;
      r.event = o.delivery.event;
      r.received_at_ms = o.delivery.received_at_ms;
      r.attempt = ReportedAttempt{o.attempt.number, o.attempt.started_at_ms,
                                  o.attempt.finished_at_ms, o.attempt.ok, o.attempt.error};
      r.output = outcome.output;
      r.dead = o.dead;
      r.next_attempt_at_ms = o.attempt.ok || o.dead ? 0 : o.next_attempt_at;
      observer_->on_attempt(r);
    } catch (const std::exception&) {
      // Out of memory in the observer: the inspector misses this attempt; the delivery does not.
    }
  }

  // False when the spool could not record the outcome (it is kept, see record_or_keep).
  bool settle(const Delivery& d, const DeliveryOutcome& outcome, std::int64_t started,
              std::int64_t finished) {
    auto o = assess(d, outcome, started, finished);
    const bool recorded = record_or_keep(o);
    report(o);
    observe(o, outcome);
    return recorded;
  }

  // A batch's outcomes in one spool transaction; all kept for record_unrecorded() when the
  // spool cannot write them. False when they were kept.
  bool settle_batch(std::vector<Delivery>& batch, const std::vector<DeliveryOutcome>& outcomes,
                    std::int64_t started, std::int64_t finished) {
    std::vector<Outcome> assessed;
    assessed.reserve(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      assessed.push_back(assess(std::move(batch[i]), outcomes.at(i), started, finished));
    }
    const std::lock_guard lock(unrecorded_mu_);
    bool recorded = false;
    if (unrecorded_.empty()) {
      std::vector<Mark> marks;
      marks.reserve(assessed.size());
      for (const auto& o : assessed) {
        marks.push_back(Mark{&o.delivery, o.attempt, o.next_attempt_at, o.dead});
      }
      auto s = spool_.mark_batch(marks);
      recorded = s.ok();
      if (!recorded) {
        log_.error("spool: cannot record delivery outcomes; kept until the spool can write them",
                   LogFields()
                       .add("sink", config_.name)
                       .add("count", static_cast<std::int64_t>(assessed.size()))
                       .add("error", s.error().detail));
      }
    }
    for (std::size_t i = 0; i < assessed.size(); ++i) {
      report(assessed[i]);
      observe(assessed[i], outcomes.at(i));
    }
    if (recorded) return true;
    for (auto& o : assessed) unrecorded_.push_back(std::move(o));
    return false;
  }

  LogFields fields(const Delivery& d) const {
    LogFields f;
    f.add("sink", config_.name).add("delivery_id", d.delivery_id).add("event", d.event);
    return f;
  }

  SinkConfig config_;
  std::size_t concurrency_;  // deliveries at once: 1 = in order, from the loop's thread
  std::unique_ptr<Sink> sink_;
  Store& spool_;
  Logger log_;
  Metrics& metrics_;
  DeliveryObserver* observer_;  // null: none

  std::mutex mu_;
  std::condition_variable loop_cv_, work_cv_;
  bool stopping_ = false, woken_ = false;
  std::deque<Delivery> queue_;
  std::set<std::int64_t> in_flight_;  // event rows handed to workers and not settled yet
  std::mutex unrecorded_mu_;
  std::vector<Outcome> unrecorded_;  // outcomes the spool failed to record, oldest first
  std::thread loop_thread_;
  std::vector<std::thread> workers_;
};

Status validate(const std::vector<SinkConfig>& sinks) {
  std::set<std::string> names;
  for (const auto& s : sinks) {
    const auto bad = [&](const std::string& why) {
      return Status(ErrorCode::invalid_config, "sink " + s.name + ": " + why);
    };
    if (s.name.empty()) return Status(ErrorCode::invalid_config, "sink " + s.spec + ": empty name");
    if (!names.insert(s.name).second) return bad("two sinks have this name");
    if (s.exec_concurrency < 1 || s.exec_concurrency > 256)
      return bad("exec concurrency must be 1..256");
    if (s.http_concurrency < 1 || s.http_concurrency > 256)
      return bad("http concurrency must be 1..256");
    if (s.http_timeout.count() < 1) return bad("http timeout must be at least 1ms");
    if (s.retry_max < 1) return bad("retry max must be at least 1");
    if (s.retry_base.count() < 1) return bad("retry base must be at least 1ms");
    if (s.exec_timeout.count() < 1) return bad("exec timeout must be at least 1ms");
  }
  return Ok{};
}

constexpr std::string_view kForward = "forward:";

bool is_http_spec(std::string_view spec) noexcept {
  return spec.starts_with("http://") || spec.starts_with("https://");
}

Result<std::unique_ptr<Sink>> make_sink(const SinkConfig& config, const Logger& log) {
  const std::string_view spec = config.spec;
  if (spec == "stdout") return make_stdout_sink(1);
  if (spec.starts_with("file:"))
    return make_file_sink(std::string(spec.substr(5)), config.file_max_bytes, config.file_sync,
                          log);
  if (spec.starts_with("exec:")) return make_exec_sink(config, std::string(spec.substr(5)), log);
  if (spec.starts_with("exec-stream:"))
    return make_exec_stream_sink(config, std::string(spec.substr(12)), log);
  if (is_http_spec(spec)) return make_http_sink(config, spec, false);
  if (spec.starts_with(kForward)) return make_http_sink(config, spec.substr(kForward.size()), true);
  return parse_sink_spec(spec).error();  // every other spec was refused by parse_sink_spec
}

}  // namespace

bool sink_in_order(const SinkConfig& config) noexcept { return sink_concurrency(config) == 1; }

bool sink_needs_original(const SinkConfig& config) noexcept {
  return std::string_view(config.spec).starts_with(kForward);
}

int sink_concurrency(const SinkConfig& config) noexcept {
  const std::string_view spec = config.spec;
  if (spec.starts_with("exec:")) return std::max(config.exec_concurrency, 1);
  if (is_http_spec(spec) || spec.starts_with(kForward)) return std::max(config.http_concurrency, 1);
  return 1;
}

std::size_t sink_batch_limit(const SinkConfig& config) noexcept {
  const std::string_view spec = config.spec;
  if (spec == "stdout") return kStdoutBatch;
  if (spec.starts_with("file:")) return kFileBatch;
  if (spec.starts_with("exec-stream:")) return kStreamBatch;
  return 1;
}

Result<SinkConfig> parse_sink_spec(std::string_view spec) {
  if (const auto eq = spec.find('='); eq != std::string_view::npos && eq > 0) {
    const auto name = spec.substr(0, eq);
    const bool is_name = std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
    });
    if (is_name) {
      auto named = parse_sink_spec(spec.substr(eq + 1));
      if (named) named->name = std::string(name);
      return named;
    }
  }
  SinkConfig config;
  config.spec = std::string(spec);
  config.name = config.spec;
  if (spec == "stdout") return config;
  const auto rest_after = [&](std::string_view prefix) { return spec.substr(prefix.size()); };
  if (spec.starts_with("file:")) {
    if (rest_after("file:").empty())
      return Error{ErrorCode::invalid_config, "file sink needs a path: file:PATH"};
    return config;
  }
  if (spec.starts_with("exec:")) {
    if (rest_after("exec:").find_first_not_of(" \t") == std::string_view::npos) {
      return Error{ErrorCode::invalid_config, "exec sink needs a command: exec:COMMAND"};
    }
    return config;
  }
  if (spec.starts_with("exec-stream:")) {
    if (rest_after("exec-stream:").find_first_not_of(" \t") == std::string_view::npos) {
      return Error{ErrorCode::invalid_config,
                   "exec-stream sink needs a command: exec-stream:COMMAND"};
    }
    return config;
  }
  if (is_http_spec(spec)) {
    if (auto url = parse_http_url(spec); !url)
      return Error{ErrorCode::invalid_config, "http sink: " + url.error().detail};
    return config;
  }
  if (spec.starts_with(kForward)) {
    const auto url = rest_after(kForward);
    if (!is_http_spec(url)) {
      return Error{ErrorCode::invalid_config,
                   "forward sink needs an http:// or https:// URL: forward:https://HOST/PATH"};
    }
    if (auto parsed = parse_http_url(url); !parsed)
      return Error{ErrorCode::invalid_config, "forward sink: " + parsed.error().detail};
    return config;
  }
  return Error{ErrorCode::invalid_config,
               "unknown sink \"" + config.spec +
                   "\" (expected stdout, file:PATH, exec:COMMAND, exec-stream:COMMAND, "
                   "http://URL, https://URL or forward:URL)"};
}

struct Dispatcher::Impl {
  std::vector<SinkConfig> configs;
  std::vector<std::unique_ptr<SinkRunner>> runners;
  bool stopped = false;
};

Dispatcher::Dispatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Dispatcher::~Dispatcher() { stop(); }

Result<std::unique_ptr<Dispatcher>> Dispatcher::start(Store& spool, std::vector<SinkConfig> sinks,
                                                      const Logger& log, Metrics& metrics,
                                                      DeliveryObserver* observer) {
  if (auto valid = validate(sinks); !valid) return std::move(valid).error();
  ignore_sigpipe();  // a closed stdout or a script that ignores stdin is a failed delivery
  auto impl = std::make_unique<Impl>();
  for (const auto& config : sinks) {
    auto sink = make_sink(config, log);
    if (!sink) return std::move(sink).error();
    impl->runners.push_back(
        std::make_unique<SinkRunner>(config, std::move(*sink), spool, log, metrics, observer));
  }
  impl->configs = std::move(sinks);
  try {
    for (auto& runner : impl->runners) runner->start();
  } catch (const std::system_error& e) {
    return Error{ErrorCode::invalid_config,
                 std::string("cannot start delivery threads: ") + e.what()};
  }
  return std::unique_ptr<Dispatcher>(new Dispatcher(std::move(impl)));
}

void Dispatcher::wake() {
  for (auto& runner : impl_->runners) runner->wake();
}

void Dispatcher::reopen_files() {
  for (auto& runner : impl_->runners) runner->request_reopen();
}

void Dispatcher::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  // Signal every sink first, so that their running deliveries wind down together.
  for (auto& runner : impl_->runners) runner->request_stop();
  for (auto& runner : impl_->runners) runner->join();
}

const std::vector<SinkConfig>& Dispatcher::sinks() const noexcept { return impl_->configs; }

}  // namespace tdhook::receiver
