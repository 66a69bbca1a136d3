#pragma once
// Asynchronous group commit in front of the spool: the HTTP event loops hand events over and go
// on serving other connections; a writer thread takes everything queued, stores it with one
// transaction (Spool::put_batch: one sync for the batch) and calls each event's completion with
// its own result. A batch grows with the load: whatever queues while a batch is being written
// goes into the next one, and a lone event is written at once. There are Store::writers()
// writer threads: one for the embedded log (one append at a time), several for a store whose
// batch mostly waits for a server's acknowledgement (NATS), so that batches overlap.

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "store/store.hpp"

namespace tdhook::receiver {

class SpoolWriter {
 public:
  using Completion = std::function<void(PutResult)>;

  explicit SpoolWriter(Store& spool, std::size_t max_batch = 512);
  ~SpoolWriter();  // stop()
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  // Queues `event`; `done` runs on the writer thread once the event's transaction committed
  // (or failed). After stop(), `done` runs at once with a failure.
  void put(NewEvent event, Completion done);

  // Writes what is queued, then stops the thread. Idempotent.
  void stop();

 private:
  struct Item {
    NewEvent event;
    Completion done;
  };
  void run();

  Store& spool_;
  std::size_t max_batch_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Item> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tdhook::receiver
