#include "base/metrics.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

namespace tdhook::receiver {
namespace {

// Upper bounds of the latency histogram, in seconds: from a local file write (~1 ms) to a script
// that needed several retries (minutes end up in +Inf).
constexpr std::array<double, 12> latency_bounds = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                   1,     5,     10,   30,   60,  300};

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_double(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, res.ptr);
}

void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

void Metrics::count_request(int status, std::string_view reason) {
  const std::lock_guard lock(mu_);
  ++requests_[{status, std::string(reason)}];
}

void Metrics::count_stored() { stored_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::count_duplicate() { duplicates_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::count_delivery(std::string_view sink, std::string_view outcome) {
  const std::lock_guard lock(mu_);
  ++deliveries_[{std::string(sink), std::string(outcome)}];
}

void Metrics::observe_delivery_latency(std::string_view sink, double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // clock steps and NaN count as "immediately"
  const std::lock_guard lock(mu_);
  Histogram& h = latency_[std::string(sink)];
  if (h.buckets.empty()) h.buckets.assign(latency_bounds.size(), 0);
  const auto it = std::lower_bound(latency_bounds.begin(), latency_bounds.end(), seconds);
  if (it != latency_bounds.end())
    ++h.buckets[static_cast<std::size_t>(it - latency_bounds.begin())];
  ++h.count;
  h.sum += seconds;
}

std::uint64_t Metrics::count_tls_failure(std::string_view reason) {
  const std::lock_guard lock(mu_);
  auto it = tls_failures_.find(reason);
  if (it == tls_failures_.end()) it = tls_failures_.emplace(std::string(reason), 0).first;
  return ++it->second;
}

std::string Metrics::render() const {
  std::string out;
  const std::lock_guard lock(mu_);

  header(out, "tdhook_requests_total", "HTTP requests answered, by status and reason.", "counter");
  for (const auto& [key, value] : requests_) {
    out += "tdhook_requests_total{status=\"" + std::to_string(key.first) + "\",reason=\"" +
           escape_label(key.second) + "\"} " + std::to_string(value) + "\n";
  }

  header(out, "tdhook_events_stored_total", "Events committed to the spool.", "counter");
  out += "tdhook_events_stored_total " + std::to_string(stored_.load()) + "\n";
  header(out, "tdhook_events_duplicate_total",
         "Notifications answered as duplicates of a stored event.", "counter");
  out += "tdhook_events_duplicate_total " + std::to_string(duplicates_.load()) + "\n";

  header(out, "tdhook_reloads_total",
         "SIGHUP reloads of the secrets, keys and --events filter, by outcome.", "counter");
  out += "tdhook_reloads_total{outcome=\"ok\"} " + std::to_string(reloads_ok_.load()) + "\n";
  out +=
      "tdhook_reloads_total{outcome=\"failed\"} " + std::to_string(reloads_failed_.load()) + "\n";

  header(out, "tdhook_tls_handshake_failures_total",
         "TLS handshakes that failed, by OpenSSL's reason.", "counter");
  for (const auto& [reason, value] : tls_failures_) {
    out += "tdhook_tls_handshake_failures_total{reason=\"" + escape_label(reason) + "\"} " +
           std::to_string(value) + "\n";
  }

  header(out, "tdhook_deliveries_total",
         "Delivery attempts by sink and outcome (delivered, retried, dead).", "counter");
  for (const auto& [key, value] : deliveries_) {
    out += "tdhook_deliveries_total{sink=\"" + escape_label(key.first) + "\",outcome=\"" +
           escape_label(key.second) + "\"} " + std::to_string(value) + "\n";
  }

  header(out, "tdhook_delivery_latency_seconds",
         "Time from receiving an event to its delivery, by sink.", "histogram");
  for (const auto& [sink, h] : latency_) {
    const std::string label = "sink=\"" + escape_label(sink) + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < latency_bounds.size(); ++i) {
      cumulative += h.buckets[i];
      out += "tdhook_delivery_latency_seconds_bucket{" + label + ",le=\"" +
             format_double(latency_bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out += "tdhook_delivery_latency_seconds_bucket{" + label + ",le=\"+Inf\"} " +
           std::to_string(h.count) + "\n";
    out += "tdhook_delivery_latency_seconds_sum{" + label + "} " + format_double(h.sum) + "\n";
    out += "tdhook_delivery_latency_seconds_count{" + label + "} " + std::to_string(h.count) + "\n";
  }

  header(out, "tdhook_spool_pending", "Deliveries waiting in the spool.", "gauge");
  out += "tdhook_spool_pending " + std::to_string(spool_pending_.load()) + "\n";
  header(out, "tdhook_store_bytes",
         "Bytes of event log segments on disk (removed once delivered and past the dedup window).",
         "gauge");
  out += "tdhook_store_bytes " + std::to_string(store_bytes_.load()) + "\n";
  return out;
}

}  // namespace tdhook::receiver
