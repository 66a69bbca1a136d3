#pragma once
// Counters and gauges for GET /metrics (Prometheus text exposition format 0.0.4).
// Thread-safe: counters are atomics or guarded by one mutex; render() may run concurrently.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tdhook::receiver {

class Metrics {
 public:
  // tdhook_requests_total{status="401",reason="secret_mismatch"}
  void count_request(int status, std::string_view reason);
  // tdhook_events_stored_total, tdhook_events_duplicate_total
  void count_stored();
  void count_duplicate();
  // tdhook_deliveries_total{sink="file:out.ndjson",outcome="delivered|retried|dead"}
  void count_delivery(std::string_view sink, std::string_view outcome);
  // tdhook_delivery_latency_seconds{sink=…} histogram: from received_at to delivered
  void observe_delivery_latency(std::string_view sink, double seconds);
  // tdhook_spool_pending (gauge, read at render time through this callback's value)
  void set_spool_pending(std::int64_t value) { spool_pending_.store(value); }
  // tdhook_store_bytes (gauge): what the event log holds on disk, bounded by retention
  void set_store_bytes(std::uint64_t value) { store_bytes_.store(value); }
  // tdhook_reloads_total{outcome="ok|failed"}: SIGHUP reloads of secrets, keys and --events
  void count_reload(bool ok) { (ok ? reloads_ok_ : reloads_failed_).fetch_add(1); }
  // tdhook_tls_handshake_failures_total{reason="unsupported protocol"}: OpenSSL's reason (a
  // bounded set of texts). Returns the count for this reason so far, this one included.
  std::uint64_t count_tls_failure(std::string_view reason);

  std::string render() const;

 private:
  struct Histogram {
    std::vector<std::uint64_t> buckets;
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<int, std::string>, std::uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> deliveries_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, std::uint64_t, std::less<>> tls_failures_;
  std::atomic<std::uint64_t> stored_{0}, duplicates_{0};
  std::atomic<std::int64_t> spool_pending_{0};
  std::atomic<std::uint64_t> store_bytes_{0};
  std::atomic<std::uint64_t> reloads_ok_{0}, reloads_failed_{0};
};

}  // namespace tdhook::receiver
