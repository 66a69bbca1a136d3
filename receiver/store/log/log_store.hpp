#pragma once
// The embedded event store: an append-only log in the data directory.
//
//   <data-dir>/log/<first seq>.log   segment files of framed, checksummed entries (segment.hpp),
//                                    one writer, one write() per batch of events (+ one
//                                    fdatasync with --durability power)
//   <data-dir>/state.db              cursors, waiting retries, dead letters (state.hpp)
//   <data-dir>/store.lock            held (flock) by the one process that has the store open
//
// Deliveries are handed to the sinks from memory (the events of the last batches, up to a
// bounded window); the log is read only after a restart or by a sink that fell further behind.
// De-duplication keys live in memory (dedup_index.hpp), rebuilt at start from the segments the
// window still needs. A segment is removed once every sink is past it and the window no longer
// needs its keys. A torn tail found at start is cut at the last whole entry; a damaged entry in
// the middle is skipped; both are logged with their offsets.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "store/store.hpp"

namespace tdhook::receiver {

struct LogStoreOptions {
  StoreOptions store;
  std::uint64_t segment_bytes = 64ull << 20;    // a new segment once one is this large
  std::size_t memory_window_bytes = 16u << 20;  // records kept for sinks that are behind
  // tdhook spool without a running receiver: open the store, answer, close. No import of an
  // old spool.db (that is the receiver's to do).
  bool for_inspection = false;
};

// Opens (creating) the store in options.store.data_dir. Fails when another process holds it
// (ErrorCode::invalid_input, detail starting "busy:"), or when a file cannot be used.
Result<std::unique_ptr<Store>> open_log_store(const LogStoreOptions& options, const Logger& log);

// True for open_log_store()'s error when another process (a running receiver) holds the store.
bool is_store_busy(const Error& error) noexcept;

// The names of the sinks that state.db in `data_dir` knows (StateDb::sink_names()); none when
// there is no state.db. For `tdhook spool`, which opens the store without the receiver's
// configuration: a sink the store is not opened with shows none of its deliveries.
Result<std::vector<std::string>> stored_sink_names(const std::filesystem::path& data_dir);

}  // namespace tdhook::receiver
