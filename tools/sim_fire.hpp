#pragma once
// Firing an event in the simulator: fan-out to the matching subscriptions with Tiledesk's wire
// format (tdhook::build_notification) and retry policy (tools::deliver), concurrently, one
// history row per delivery, and for operator.select the decision Tiledesk would take from the
// answer (reference §4.3 "Response processing").

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delivery.hpp"
#include "sim_store.hpp"
#include "tdhook/result.hpp"
#include "tdhook/sign.hpp"

namespace tdhook::tools::sim {

// JSON lines on stderr, one write(2) a line. Never give it a secret, a token or a URL with
// userinfo (see loggable_url).
class Log {
 public:
  explicit Log(int fd = 2) : fd_(fd) {}
  void write(std::string_view level, std::string_view msg,
             const Json& fields = Json::object()) const;
  void info(std::string_view msg, const Json& fields = Json::object()) const {
    write("info", msg, fields);
  }
  void warn(std::string_view msg, const Json& fields = Json::object()) const {
    write("warn", msg, fields);
  }

 private:
  int fd_;
};

// `url` with any user:password@ removed (it is a credential the target carries).
std::string loggable_url(std::string_view url);
// JSON text of `j`, compact, invalid UTF-8 replaced rather than thrown on.
std::string dump(const Json& j, int indent = -1);

struct FireOptions {
  bool compat = false;  // Tiledesk's batch bug (§3.5) and its unredacted history rows
  double retry_scale = 1.0;
  std::optional<std::chrono::milliseconds> timeout;           // none, as Tiledesk
  SigningKey global_key{Algorithm::hs256, "nodeauthsecret"};  // Tiledesk's default
  std::string origin = "http://localhost:3000";
  std::function<double()> jitter;  // empty: uniform random
};

struct DeliveryReport {
  std::string subscription_id, target;
  bool global = false;
  std::string error;  // set when nothing was sent (signing failed, batch aborted)
  std::vector<AttemptResult> attempts;
  int finish_order = -1;  // 0 = the first delivery of the firing to finish
};

// What Tiledesk does with an operator.select answer.
struct OperatorDecision {
  bool replaced = false;
  std::string reason;
  Json operators;                     // the replacement's `operators` when replaced
  std::vector<std::string> warnings;  // fields Tiledesk dereferences without checks
};
// From the final attempt of the first delivery to finish; nullptr = no subscription matched.
OperatorDecision decide_operator(const DeliveryReport* first_finished);

struct FireReport {
  std::string project_id, event;
  std::int64_t timestamp = 0;
  bool finished = false;  // false when answered before the deliveries ended ("async")
  std::chrono::steady_clock::time_point started;
  std::vector<DeliveryReport> deliveries;
  std::optional<OperatorDecision> operator_select;
};
Json to_json(const FireReport& report);

class Firer {
 public:
  Firer(Store& store, FireOptions options, const Log& log)
      : store_(store), options_(std::move(options)), log_(log) {}
  ~Firer();  // waits for deliveries still running
  Firer(const Firer&) = delete;
  Firer& operator=(const Firer&) = delete;

  // One occurrence of `event` in `project_id`. `payload_json` is any JSON text. With `wait`
  // false the report lists the deliveries without their outcome.
  Result<FireReport> fire(const std::string& project_id, const std::string& event,
                          const std::string& payload_json, bool wait);

 private:
  struct Batch;
  struct Job;
  void run_job(const std::shared_ptr<Batch>& batch, std::size_t index, Job job);
  void record(const Batch& batch, const Job& job, const DeliveryReport& report);

  Store& store_;
  FireOptions options_;
  const Log& log_;
  std::mutex mutex_;
  std::condition_variable idle_;
  int running_ = 0;
};

}  // namespace tdhook::tools::sim
