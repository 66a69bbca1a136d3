// GCC 12 at -O2 reports a potential null dereference inside CLI11 2.1's inlined string
// splitting (a false positive in the library's header, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

// `tdhook send`: POSTs notifications the way Tiledesk does (delivery.hpp), one with its
// response, or many as a small load generator.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "commands.hpp"
#include "delivery.hpp"
#include "sign_cmd.hpp"

namespace tdhook::tools {

struct SendOptions {
  SignOptions sign;
  std::string to;
  std::string retry = "none";
  double retry_scale = 1.0;
  double timeout_s = 0;  // 0 = wait forever, as Tiledesk does
  int count = 1;
  int concurrency = 1;
  bool keep_alive = false;
};

namespace {

using Clock = std::chrono::steady_clock;

std::string format_duration(Clock::duration d) {
  const double ms = std::chrono::duration<double, std::milli>(d).count();
  char buf[32];
  if (ms < 1000.0) {
    std::snprintf(buf, sizeof buf, "%.1f ms", ms);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", ms / 1000.0);
  }
  return buf;
}

std::string_view reason(int status) {
  static const std::map<int, std::string_view> kReasons = {{200, "OK"},
                                                           {201, "Created"},
                                                           {202, "Accepted"},
                                                           {204, "No Content"},
                                                           {301, "Moved Permanently"},
                                                           {302, "Found"},
                                                           {307, "Temporary Redirect"},
                                                           {400, "Bad Request"},
                                                           {401, "Unauthorized"},
                                                           {403, "Forbidden"},
                                                           {404, "Not Found"},
                                                           {405, "Method Not Allowed"},
                                                           {408, "Request Timeout"},
                                                           {413, "Payload Too Large"},
                                                           {415, "Unsupported Media Type"},
                                                           {429, "Too Many Requests"},
                                                           {500, "Internal Server Error"},
                                                           {502, "Bad Gateway"},
                                                           {503, "Service Unavailable"},
                                                           {504, "Gateway Timeout"}};
  const auto it = kReasons.find(status);
  return it == kReasons.end() ? std::string_view() : it->second;
}

std::string describe_attempt(const AttemptResult& a) {
  if (a.status == 0) return "error: " + a.error;
  return std::to_string(a.status) + " " + std::string(reason(a.status));
}

DeliveryRequest make_request(const SendOptions& o, Notification n) {
  DeliveryRequest r;
  r.url = o.to;
  r.body = std::move(n.body);
  r.secret = std::move(n.secret);
  r.origin = o.sign.origin;
  r.keep_alive = o.keep_alive;
  if (o.timeout_s > 0) {
    r.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000.0));
  }
  return r;
}

RetryPolicy make_policy(const SendOptions& o) {
  RetryPolicy p;
  p.enabled = o.retry == "tiledesk";
  p.scale = o.retry_scale;
  return p;
}

void print_body(const AttemptResult& a) {
  if (a.body.empty()) return;
  const auto json = nlohmann::json::parse(a.body, nullptr, false);
  if (!json.is_discarded()) {
    std::cout << json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << a.body << (a.body.ends_with('\n') ? "" : "\n");
  }
}

int send_one(const SendOptions& o, const NotificationFactory& factory) {
  auto n = factory.make(o.sign.timestamp_ms.value_or(now_ms()));
  if (!n) {
    std::cerr << "tdhook send: " << n.error().detail << "\n";
    return 2;
  }
  auto policy = make_policy(o);
  if (policy.enabled) {
    policy.on_attempt = [](int number, const AttemptResult& a) {
      std::cout << "attempt " << number << ": " << describe_attempt(a) << " in "
                << format_duration(a.finished - a.started) << std::endl;
    };
  }
  const auto result = deliver(make_request(o, std::move(*n)), policy);
  const auto& last = result.final_attempt();
  const auto took = format_duration(last.finished - result.attempts.front().started);
  const bool ok = last.status >= 200 && last.status < 300;
  const auto attempts = result.attempts.size();
  std::cout << describe_attempt(last) << "  " << factory.event() << "  "
            << (ok ? "delivered" : "failed") << " in " << took;
  if (attempts > 1) std::cout << " (" << attempts << " attempts)";
  std::cout << "\n";
  print_body(last);
  std::cout.flush();
  return ok ? 0 : 1;
}

struct LoadStats {
  std::vector<double> latencies_ms;
  std::map<int, std::size_t> statuses;
  std::map<std::string, std::size_t> errors;
  void merge(const LoadStats& other) {
    latencies_ms.insert(latencies_ms.end(), other.latencies_ms.begin(), other.latencies_ms.end());
    for (const auto& [k, v] : other.statuses) statuses[k] += v;
    for (const auto& [k, v] : other.errors) errors[k] += v;
  }
};

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(rank, sorted.size() - 1)];
}

void print_summary(const SendOptions& o, LoadStats& stats, Clock::duration elapsed,
                   std::string_view event) {
  const double secs = std::chrono::duration<double>(elapsed).count();
  const auto sent = stats.latencies_ms.size();
  std::sort(stats.latencies_ms.begin(), stats.latencies_ms.end());
  char line[256];
  std::snprintf(line, sizeof line, "sent %zu %.*s in %.2f s: %.0f req/s (concurrency %d, %s)\n",
                sent, static_cast<int>(event.size()), event.data(), secs,
                secs > 0 ? static_cast<double>(sent) / secs : 0.0, o.concurrency,
                o.keep_alive ? "keep-alive" : "Connection: close");
  std::cout << line << "status:";
  if (stats.statuses.empty()) std::cout << " none";
  for (const auto& [status, n] : stats.statuses) std::cout << " " << status << " x " << n;
  std::size_t errors = 0;
  for (const auto& entry : stats.errors) errors += entry.second;
  std::cout << "\nerrors: " << errors;
  for (const auto& [text, n] : stats.errors) std::cout << "\n  " << n << " x " << text;
  std::snprintf(line, sizeof line, "\nlatency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                percentile(stats.latencies_ms, 0.50), percentile(stats.latencies_ms, 0.99),
                stats.latencies_ms.empty() ? 0.0 : stats.latencies_ms.back());
  std::cout << line << std::flush;
}

int send_many(const SendOptions& o, const NotificationFactory& factory) {
  auto target = parse_target(o.to);
  if (!target) {
    std::cerr << "tdhook send: --to: " << target.error().detail << "\n";
    return 2;
  }
  // Each notification is a new occurrence: a timestamp no other one has, so that a receiver
  // does not take it for a retry.
  std::atomic<std::int64_t> last_ts{o.sign.timestamp_ms.value_or(now_ms()) - 1};
  auto next_ts = [&] {
    auto prev = last_ts.load();
    std::int64_t next = 0;
    do {
      next = o.sign.timestamp_ms ? prev + 1 : std::max(now_ms(), prev + 1);
    } while (!last_ts.compare_exchange_weak(prev, next));
    return next;
  };
  std::atomic<int> next_index{0};
  std::mutex merge_mutex;
  LoadStats total;
  const auto policy = make_policy(o);
  auto worker = [&] {
    LoadStats mine;
    while (next_index.fetch_add(1) < o.count) {
      auto n = factory.make(next_ts());
      if (!n) {
        ++mine.errors["sign: " + n.error().detail];
        continue;
      }
      auto request = make_request(o, std::move(*n));
      const auto result =
          policy.enabled ? deliver(request, policy) : DeliveryResult{{post_once(*target, request)}};
      const auto& last = result.final_attempt();
      mine.latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(last.finished - result.attempts.front().started)
              .count());
      if (last.status == 0) {
        ++mine.errors[last.error];
      } else {
        ++mine.statuses[last.status];
      }
    }
    const std::lock_guard lock(merge_mutex);
    total.merge(mine);
  };
  const auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < std::min(o.concurrency, o.count); ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  print_summary(o, total, Clock::now() - started, factory.event());
  const bool all_ok = total.errors.empty() &&
                      std::all_of(total.statuses.begin(), total.statuses.end(),
                                  [](const auto& e) { return e.first >= 200 && e.first < 300; });
  return all_ok ? 0 : 1;
}

}  // namespace

int run_send(const SendOptions& options) {
  auto factory = NotificationFactory::create(options.sign, options.to);
  if (!factory) {
    std::cerr << "tdhook send: " << factory.error().detail << "\n";
    return 2;
  }
  if (auto target = parse_target(options.to); !target) {
    std::cerr << "tdhook send: --to: " << target.error().detail << "\n";
    return 2;
  }
  if (options.count == 1 && options.concurrency == 1) return send_one(options, *factory);
  return send_many(options, *factory);
}

void setup_send(CLI::App& app) {
  auto options = std::make_shared<SendOptions>();
  auto* cmd = app.add_subcommand(
      "send",
      "POST a notification as Tiledesk does: its headers in its order and case (http:// only: "
      "over https:// the TLS client orders headers itself), its retry policy on request. Exit "
      "0 when answered 2xx, 1 otherwise, 2 on a usage error.");
  cmd->add_option("--to", options->to, "Receiver URL (http:// or https://)")
      ->required()
      ->type_name("URL");
  add_notification_options(*cmd, options->sign);
  cmd->add_option("--retry", options->retry,
                  "none: one attempt; tiledesk: retry 1xx/429/5xx and transport errors as "
                  "Tiledesk does (2-3 s, then 4-5 s)")
      ->check(CLI::IsMember({"none", "tiledesk"}))
      ->capture_default_str();
  cmd->add_option("--retry-scale", options->retry_scale, "Multiply the retry delays (tests)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--timeout", options->timeout_s,
                  "Give up on an attempt after this many seconds (default: wait forever, as "
                  "Tiledesk does)")
      ->check(CLI::NonNegativeNumber)
      ->type_name("SECONDS");
  cmd->add_option("--count", options->count, "Send N notifications, each a new occurrence")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  cmd->add_option("--concurrency", options->concurrency, "Notifications in flight at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_flag("--keep-alive", options->keep_alive,
                "Reuse connections (Connection: keep-alive, as Node >= 19) instead of "
                "Connection: close (Node 18, Tiledesk's image)");
  cmd->callback([options] {
    if (const int code = run_send(*options); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tdhook::tools
