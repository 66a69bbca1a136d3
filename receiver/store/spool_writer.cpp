#include "store/spool_writer.hpp"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

namespace tdhook::receiver {

SpoolWriter::SpoolWriter(Store& spool, std::size_t max_batch)
    : spool_(spool), max_batch_(max_batch) {
  const std::size_t n = std::max<std::size_t>(1, spool.writers());
  for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
}

SpoolWriter::~SpoolWriter() { stop(); }

void SpoolWriter::put(NewEvent event, Completion done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(Item{std::move(event), std::move(done)});
      if (queue_.size() == 1) cv_.notify_one();
      return;
    }
  }
  done(PutResult{PutOutcome::failed, {}, "the receiver is stopping"});
}

void SpoolWriter::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void SpoolWriter::run() {
  ::pthread_setname_np(::pthread_self(), "tdhook-spool");
  std::vector<Item> batch;
  std::vector<NewEvent> events;
  std::unique_lock lock(mutex_);
  while (true) {
    // Idle for a second: the spool's idle upkeep (emptying a grown log), then wait again.
    if (!cv_.wait_for(lock, std::chrono::seconds(1),
                      [this] { return stopping_ || !queue_.empty(); })) {
      lock.unlock();
      spool_.maintain(true);
      lock.lock();
      continue;
    }
    if (queue_.empty()) return;  // stopping, and everything queued was written
    if (queue_.size() <= max_batch_) {
      batch.swap(queue_);
    } else {
      auto split = queue_.begin() + static_cast<std::ptrdiff_t>(max_batch_);
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(split));
      queue_.erase(queue_.begin(), split);
    }
    lock.unlock();
    events.clear();
    events.reserve(batch.size());
    for (auto& item : batch) events.push_back(std::move(item.event));
    auto results = spool_.put_batch(std::move(events));
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
    batch.clear();
    events = {};
    spool_.maintain(false);
    lock.lock();
  }
}

}  // namespace tdhook::receiver
