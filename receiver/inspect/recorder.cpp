#include "inspect/recorder.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

#include "store/record.hpp"

namespace tdhook::receiver::inspect {
namespace {

// Every kept body together stays under about this much; each one keeps at least the first
// kMinBodyCap bytes.
constexpr std::size_t kBodyBudget = 128u * 1024 * 1024;
constexpr std::size_t kMinBodyCap = 16u * 1024;
constexpr std::size_t kMaxBodyCap = 8u * 1024 * 1024;

std::size_t body_cap_for(std::size_t keep) {
  return std::clamp(kBodyBudget / std::max<std::size_t>(keep, 1), kMinBodyCap, kMaxBodyCap);
}

std::size_t index_size_for(std::size_t keep) {
  std::size_t n = 64;
  while (n < keep * 2) n *= 2;
  return n;
}

std::uint64_t hash_id(std::string_view id) noexcept {
  const auto h = static_cast<std::uint64_t>(std::hash<std::string_view>{}(id));
  return h == 0 ? 1 : h;  // 0 marks an empty cell
}

SinkProgress progress_for(const std::string& sink) {
  SinkProgress p;
  p.sink = sink;
  return p;
}

std::string tail_of(const std::string& text, std::size_t limit) {
  return text.size() <= limit ? text : text.substr(text.size() - limit);
}

// One attempt's outcome in what a sink made of its request so far.
void apply(std::vector<SinkProgress>& progress, const AttemptReport& report, AttemptView view) {
  auto it = std::find_if(progress.begin(), progress.end(),
                         [&](const SinkProgress& p) { return p.sink == report.sink; });
  if (it == progress.end()) {
    progress.push_back(progress_for(report.sink));
    it = std::prev(progress.end());
  }
  SinkProgress& p = *it;
  p.attempts = std::max(p.attempts, report.attempt.number);
  if (report.attempt.ok) {
    p.state = SinkState::delivered;
    p.latency_ms = std::max<std::int64_t>(0, report.attempt.finished_at_ms - report.received_at_ms);
    p.next_attempt_at_ms = 0;
  } else {
    p.state = report.dead ? SinkState::dead : SinkState::retrying;
    p.last_error = view.error;
    p.next_attempt_at_ms = report.dead ? 0 : report.next_attempt_at_ms;
  }
  if (p.history.size() >= Recorder::kKeptAttempts) p.history.erase(p.history.begin());
  p.history.push_back(std::move(view));
}

}  // namespace

std::string_view to_string(SinkState state) noexcept {
  switch (state) {
    case SinkState::pending:
      return "pending";
    case SinkState::delivered:
      return "delivered";
    case SinkState::retrying:
      return "retrying";
    case SinkState::dead:
      return "dead";
  }
  return "pending";
}

Recorder::Recorder(std::size_t keep)
    : keep_(std::max<std::size_t>(keep, 1)),
      body_cap_(body_cap_for(keep_)),
      started_ms_(now_ms()),
      staged_(kStaged),
      staged_sizes_(kStaged),
      batch_(kStaged),
      batch_sizes_(kStaged),
      ring_(keep_),
      index_(index_size_for(keep_)),
      early_(kEarly),
      progress_log_(kProgressLog) {
  filer_ = std::thread([this] { run(); });
}

Recorder::~Recorder() {
  {
    std::lock_guard lock(stage_mu_);
    filer_stop_ = true;
  }
  stage_cv_.notify_all();
  if (filer_.joinable()) filer_.join();
}

// Ids name slots one to one: the slot of an id above newest_ - keep_ has not been reused.
bool Recorder::in_ring(std::uint64_t id) const noexcept {
  return id != 0 && id <= newest_ && newest_ - id < keep_;
}

void Recorder::index_insert(std::uint64_t hash, std::uint64_t id) noexcept {
  const std::size_t mask = index_.size() - 1;
  Cell* victim = nullptr;
  for (std::size_t i = 0; i < kProbes; ++i) {
    Cell& cell = index_[(hash + i) & mask];
    if (cell.id == 0 || !in_ring(cell.id)) {
      victim = &cell;
      break;
    }
    if (victim == nullptr || cell.id < victim->id) victim = &cell;
  }
  *victim = Cell{hash, id};
}

std::optional<std::uint64_t> Recorder::index_find(const std::string& delivery_id) const noexcept {
  if (delivery_id.empty()) return std::nullopt;
  const auto hash = hash_id(delivery_id);
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = 0; i < kProbes; ++i) {
    const Cell& cell = index_[(hash + i) & mask];
    if (cell.hash != hash || !in_ring(cell.id)) continue;
    if (slot_of(cell.id).kept->request.delivery_id == delivery_id) return cell.id;
  }
  return std::nullopt;
}

// Under mu_: `kept` goes into the next slot; what the slot held comes back in `retired` and
// `old_progress`, to be freed by the caller outside the lock. A kept request is never changed
// once here (readers hold it without the lock): each one is a new object.
std::uint64_t Recorder::publish(std::shared_ptr<const Kept> kept,
                                std::shared_ptr<const Kept>& retired,
                                std::vector<SinkProgress>& old_progress) noexcept {
  const std::uint64_t id = newest_ + 1;
  Slot& slot = slot_of(id);
  retired = std::move(slot.kept);
  slot.kept = std::move(kept);
  old_progress.swap(slot.progress);
  slot.id = id;
  newest_ = id;
  const auto& request = slot.kept->request;
  const auto& delivery_id = request.delivery_id;
  if (!delivery_id.empty() && (request.reason == "stored" || !slot.kept->replay_of.empty())) {
    const auto hash = hash_id(delivery_id);
    index_insert(hash, id);
    if (early_count_ > 0) take_early(hash, slot);
  }
  return id;
}

// Under mu_: attempts on `slot`'s event that came before its request (moved, not copied).
void Recorder::take_early(std::uint64_t hash, Slot& slot) noexcept {
  const std::size_t mask = kEarly - 1;
  for (std::size_t i = 0; i < kProbes; ++i) {
    Early& e = early_[(hash + i) & mask];
    if (e.hash != hash || e.delivery_id != slot.kept->request.delivery_id) continue;
    slot.progress.swap(e.progress);  // the slot's own is empty: publish() took it
    e.hash = 0;
    e.progress.clear();
    --early_count_;
    return;
  }
}

void Recorder::on_request(ObservedRequest&& request) noexcept {
  const std::size_t body_size = request.body.size();
  if (body_size > body_cap_) {
    // Cut once, here, so that the ring's memory stays bounded (bodies this large are rare).
    try {
      request.body.resize(body_cap_);
      request.body.shrink_to_fit();
    } catch (...) {
      request.body.clear();
    }
  }
  bool wake = false;
  {
    std::lock_guard lock(stage_mu_);
    if (staged_count_ == kStaged) {
      ++dropped_;
      return;
    }
    const std::size_t at = (staged_first_ + staged_count_) % kStaged;
    // The staged slot is empty (the thread took its contents): nothing to free here.
    std::swap(staged_[at], request);
    staged_sizes_[at] = body_size;
    ++staged_count_;
    wake = filer_idle_;
    filer_idle_ = false;
  }
  if (wake) stage_cv_.notify_one();
}

std::size_t Recorder::take_staged() {
  std::lock_guard lock(stage_mu_);
  const std::size_t n = staged_count_;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t at = (staged_first_ + i) % kStaged;
    std::swap(batch_[i], staged_[at]);  // batch_[i] was emptied by the previous filing
    batch_sizes_[i] = staged_sizes_[at];
  }
  staged_first_ = (staged_first_ + n) % kStaged;
  staged_count_ = 0;
  return n;
}

// Files batch_[0, count) in the ring; what the ring's slots held is freed outside mu_.
void Recorder::file(std::size_t count) {
  if (count == 0) return;
  std::vector<std::shared_ptr<const Kept>> fresh(count), retired(count);
  std::vector<std::vector<SinkProgress>> old_progress(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto kept = std::make_shared<Kept>();
    std::swap(kept->request, batch_[i]);  // batch_[i] is left empty for the next filing
    kept->body_size = batch_sizes_[i];
    fresh[i] = std::move(kept);
  }
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < count; ++i)
      publish(std::move(fresh[i]), retired[i], old_progress[i]);
    wake = listeners_ > 0;
  }
  if (wake) changed_.notify_all();
}

void Recorder::run() {
  for (;;) {
    {
      std::unique_lock lock(stage_mu_);
      if (staged_count_ == 0 && !filer_stop_) {
        filer_idle_ = true;
        stage_cv_.wait(lock, [&] { return staged_count_ > 0 || filer_stop_; });
        filer_idle_ = false;
      }
      if (filer_stop_ && staged_count_ == 0) return;
    }
    try {
      std::lock_guard filing(filing_mu_);
      file(take_staged());
    } catch (...) {
      // Out of memory: these requests are not kept.
    }
    // Paced: under load a filing takes many requests, and on_request wakes nobody.
    std::unique_lock lock(stage_mu_);
    stage_cv_.wait_for(lock, kFilingPace, [&] { return filer_stop_; });
  }
}

void Recorder::flush() {
  std::lock_guard filing(filing_mu_);
  file(take_staged());
}

std::uint64_t Recorder::dropped() const {
  std::lock_guard lock(stage_mu_);
  return dropped_;
}

std::uint64_t Recorder::add_replay(ObservedRequest request, std::string replay_of) noexcept {
  std::shared_ptr<const Kept> retired;
  std::vector<SinkProgress> old_progress;
  std::uint64_t id = 0;
  try {
    auto kept = std::make_shared<Kept>();
    kept->body_size = request.body.size();
    kept->request = std::move(request);
    kept->replay_of = std::move(replay_of);
    // After what is staged, so that ids keep the order of events.
    std::lock_guard filing(filing_mu_);
    file(take_staged());
    std::lock_guard lock(mu_);
    id = publish(std::move(kept), retired, old_progress);
  } catch (...) {
    return 0;  // out of memory: the replay is stored, not shown
  }
  changed_.notify_all();
  return id;
}

void Recorder::on_attempt(const AttemptReport& report) noexcept {
  try {
    AttemptView view;
    view.number = report.attempt.number;
    view.started_at_ms = report.attempt.started_at_ms;
    view.finished_at_ms = report.attempt.finished_at_ms;
    view.ok = report.attempt.ok;
    view.error = report.attempt.error.substr(0, kKeptOutput);
    view.output = tail_of(report.output, kKeptOutput);
    bool wake = false;
    std::vector<SinkProgress> evicted;  // freed outside the lock
    {
      std::lock_guard lock(mu_);
      const auto id = index_find(report.delivery_id);
      if (!id) {
        // Its request may not be reported yet: kept for on_request (the oldest make room).
        const auto hash = hash_id(report.delivery_id);
        const std::size_t mask = kEarly - 1;
        Early* cell = nullptr;
        for (std::size_t i = 0; i < kProbes && cell == nullptr; ++i) {
          Early& e = early_[(hash + i) & mask];
          if (e.hash == hash && e.delivery_id == report.delivery_id) cell = &e;
        }
        for (std::size_t i = 0; i < kProbes && cell == nullptr; ++i) {
          Early& e = early_[(hash + i) & mask];
          if (e.hash == 0) cell = &e;
        }
        if (cell == nullptr) {
          cell = &early_[hash & mask];
          for (std::size_t i = 1; i < kProbes; ++i) {
            Early& e = early_[(hash + i) & mask];
            if (e.stamp < cell->stamp) cell = &e;
          }
          evicted.swap(cell->progress);
          cell->hash = 0;
          --early_count_;
        }
        if (cell->hash == 0) {
          cell->hash = hash;
          cell->delivery_id = report.delivery_id;
          ++early_count_;
        }
        cell->stamp = ++early_stamp_;
        apply(cell->progress, report, std::move(view));
        return;
      }
      Slot& slot = slot_of(*id);
      if (slot.progress.empty()) {
        for (const auto& sink : slot.kept->request.sinks)
          slot.progress.push_back(progress_for(sink));
      }
      apply(slot.progress, report, std::move(view));
      ++progress_seq_;
      progress_log_[progress_seq_ % kProgressLog] = *id;
      wake = listeners_ > 0;
    }
    if (wake) changed_.notify_all();
  } catch (...) {
    // Out of memory: this attempt is not shown; delivery goes on.
  }
}

std::uint64_t Recorder::newest() const {
  std::lock_guard lock(mu_);
  return newest_;
}

std::int64_t Recorder::covered_since_ms() const {
  std::lock_guard lock(mu_);
  if (newest_ < keep_) return started_ms_;
  const Slot& oldest = slot_of(newest_ - keep_ + 1);
  return oldest.kept->request.received_at_ms;
}

std::vector<std::pair<std::uint64_t, std::shared_ptr<const Kept>>> Recorder::requests_before(
    std::uint64_t before) const {
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const Kept>>> out;
  std::lock_guard lock(mu_);
  std::uint64_t id = before == 0 || before > newest_ + 1 ? newest_ : before - 1;
  out.reserve(std::min<std::uint64_t>(id, keep_));
  for (; id != 0 && in_ring(id); --id) out.emplace_back(id, slot_of(id).kept);
  return out;
}

// Every sink the request is due to, in order (pending until reported), then any other reported.
std::vector<SinkProgress> Recorder::progress_of(const Slot& slot) const {
  std::vector<SinkProgress> out;
  for (const auto& sink : slot.kept->request.sinks) {
    const auto it = std::find_if(slot.progress.begin(), slot.progress.end(),
                                 [&](const SinkProgress& p) { return p.sink == sink; });
    out.push_back(it != slot.progress.end() ? *it : progress_for(sink));
  }
  for (const auto& p : slot.progress) {
    const auto& sinks = slot.kept->request.sinks;
    if (std::find(sinks.begin(), sinks.end(), p.sink) == sinks.end()) out.push_back(p);
  }
  return out;
}

std::optional<Snapshot> Recorder::get(std::uint64_t id) const {
  std::lock_guard lock(mu_);
  if (!in_ring(id)) return std::nullopt;
  const Slot& slot = slot_of(id);
  return Snapshot{id, slot.kept, progress_of(slot)};
}

std::optional<std::uint64_t> Recorder::find_stored(const std::string& delivery_id) const {
  std::lock_guard lock(mu_);
  return index_find(delivery_id);
}

Cursor Recorder::cursor() const {
  std::lock_guard lock(mu_);
  return Cursor{newest_, progress_seq_};
}

Changes Recorder::wait(Cursor& cursor, std::chrono::steady_clock::time_point deadline,
                       std::chrono::steady_clock::time_point not_before) {
  Changes out;
  std::unique_lock lock(mu_);
  // Pacing first (only the stop ends it early), then the wait for something new: only that
  // one counts as listening, so that requests do not wake a stream that paces.
  changed_.wait_until(lock, std::min(not_before, deadline), [&] { return stopping_; });
  ++listeners_;
  changed_.wait_until(lock, deadline, [&] {
    return stopping_ || newest_ != cursor.request || progress_seq_ != cursor.progress;
  });
  --listeners_;
  if (stopping_) {
    out.stopped = true;
    return out;
  }
  if (newest_ - cursor.request > kMaxChangesPerWake ||
      progress_seq_ - cursor.progress > kProgressLog / 2) {
    out.gap = true;
  } else {
    for (auto id = cursor.request + 1; id <= newest_; ++id) {
      if (in_ring(id)) out.added.push_back(id);
    }
    for (auto seq = cursor.progress + 1; seq <= progress_seq_; ++seq) {
      const auto id = progress_log_[seq % kProgressLog];
      if (id > cursor.request && id <= newest_) continue;  // sent as new, with its progress
      if (std::find(out.updated.begin(), out.updated.end(), id) == out.updated.end()) {
        out.updated.push_back(id);
      }
    }
  }
  cursor = Cursor{newest_, progress_seq_};
  return out;
}

void Recorder::stop_streams() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
}

}  // namespace tdhook::receiver::inspect
