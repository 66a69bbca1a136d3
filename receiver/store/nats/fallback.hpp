#pragma once
// The NATS store with a local fallback (--store-fallback local): when JetStream does not
// acknowledge a publish within --store-timeout (no server, a leader election, no quorum), the
// event is committed to an embedded event log in <data-dir>/fallback instead and answered 200;
// a forwarding thread publishes what waits there to the stream as soon as it acknowledges
// again, oldest first, with the same Nats-Msg-Id, so that a Tiledesk retry that reached
// another receiver meanwhile is still one event once both are in the stream. While anything
// waits locally new events join the queue behind it (arrival order), and a receiver restarted
// with a non-empty fallback forwards it first.
//
// The stream's duplicate window must outlast the longest fallback: --store-fallback-max (the
// oldest waiting event may be that old before new events are refused with 503) is checked
// against it at start. An event forwarded later than that is still forwarded (never dropped),
// and counted and logged: a retry of it elsewhere could then be a second event.
//
// De-duplication while events wait locally is this receiver's only (its recent keys and the
// fallback log's window); the stream sorts out the rest once they are forwarded.
//
// Everything else (the sinks' consumers, dead letters, `tdhook spool`) is the NATS store's.

#include <chrono>
#include <filesystem>
#include <memory>

#include "base/log.hpp"
#include "store/nats/nats_store.hpp"
#include "store/store.hpp"

namespace tdhook::receiver {

struct FallbackOptions {
  std::filesystem::path dir;  // the fallback log's own data directory
  Durability durability = Durability::process;
  std::chrono::milliseconds dedup_window{24LL * 3600 * 1000};
  std::size_t max_pending = 100000;
  // The oldest a waiting event may be while new ones still go to the fallback (see above).
  std::chrono::milliseconds max_age{3600 * 1000};
};

// Opens the NATS store, checks its duplicate window against options.max_age, opens the
// fallback log and starts forwarding what it holds.
Result<std::unique_ptr<Store>> open_nats_store_with_fallback(const NatsStoreOptions& nats,
                                                             const FallbackOptions& options,
                                                             const Logger& log);

}  // namespace tdhook::receiver
