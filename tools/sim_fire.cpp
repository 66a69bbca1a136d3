#include "sim_fire.hpp"

#include <unistd.h>

#include <cmath>
#include <memory>
#include <thread>
#include <utility>

namespace tdhook::tools::sim {

void Log::write(std::string_view level, std::string_view msg, const Json& fields) const {
  Json line = Json::object();
  line["ts"] = iso_time(now_ms());
  line["level"] = level;
  line["msg"] = msg;
  for (const auto& [key, value] : fields.items()) line[key] = value;
  const std::string text = dump(line) + "\n";
  // One write(2) per line so that lines of concurrent deliveries never interleave.
  [[maybe_unused]] const auto written = ::write(fd_, text.data(), text.size());
}

std::string loggable_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const auto start = scheme_end + 3;
  const auto end = url.find_first_of("/?#", start);
  const auto authority = url.substr(start, end == std::string_view::npos ? url.npos : end - start);
  const auto at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  std::string out(url.substr(0, start));
  out += url.substr(start + at + 1);
  return out;
}

std::string dump(const Json& j, int indent) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

namespace {

bool truthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) {
    const double d = v.get<double>();
    return d != 0.0 && !std::isnan(d);
  }
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return true;  // arrays and objects, even empty ones, as in JavaScript
}

double ms_between(std::chrono::steady_clock::time_point from,
                  std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// JSON.stringify of what `request` makes of a response body with {json: true}: parsed when it
// parses, else the text.
Json parsed_body(const std::string& body) {
  Json parsed = Json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return Json(body);
  return parsed;
}

// The url.parse() object `request` puts in response.request.uri.
Json uri_json(const std::string& url) {
  Json uri = Json::object();
  auto target = parse_target(url);
  if (!target) return uri;
  const std::string path = target->path;
  const auto q = path.find('?');
  uri["protocol"] = target->scheme + ":";
  uri["slashes"] = true;
  uri["auth"] = nullptr;  // never stored: it is a credential
  uri["host"] = target->host_header;
  uri["port"] = std::to_string(target->port);
  uri["hostname"] = target->host;
  uri["hash"] = nullptr;
  uri["search"] = q == std::string::npos ? Json(nullptr) : Json(path.substr(q));
  uri["query"] = q == std::string::npos ? Json(nullptr) : Json(path.substr(q + 1));
  uri["pathname"] = path.substr(0, q);
  uri["path"] = path;
  uri["href"] = loggable_url(url);
  return uri;
}

std::string redact_token(const std::string& body) {
  const std::string marker = ",\"token\":\"";
  const auto at = body.rfind(marker);
  if (at == std::string::npos) return body;
  return body.substr(0, at + marker.size()) + "[redacted]\"}";
}

}  // namespace

OperatorDecision decide_operator(const DeliveryReport* first) {
  OperatorDecision d;
  if (first == nullptr) {
    d.reason = "no operator.select subscription for the project: Tiledesk keeps its choice";
    return d;
  }
  if (first->attempts.empty()) {
    d.reason = "the delivery was not sent (" + first->error + "): Tiledesk keeps its choice";
    return d;
  }
  const AttemptResult& last = first->attempts.back();
  if (last.status == 0) {
    d.reason = "transport error after retries (" + last.error + "): Tiledesk keeps its choice";
    return d;
  }
  const Json body = parsed_body(last.body);
  const std::string status = "HTTP " + std::to_string(last.status);
  if (!body.is_object()) {
    d.reason = status + ", the answer is not a JSON object: Tiledesk keeps its choice";
    return d;
  }
  if (!body.contains("operators") || !truthy(body["operators"])) {
    d.reason = status + ", the answer has no truthy `operators`: Tiledesk keeps its choice";
    return d;
  }
  d.replaced = true;
  d.operators = body["operators"];
  d.reason = status +
             " (the status is ignored), the answer has `operators`: it replaces the "
             "routing result";
  if (!body.contains("department") || !body["department"].is_object() ||
      !body["department"].contains("_id")) {
    d.warnings.emplace_back("no department._id: conversation creation fails with a TypeError");
  }
  if (!body.contains("agents") || !body["agents"].is_array()) {
    d.warnings.emplace_back("no agents array: conversation creation fails with a TypeError");
  }
  if (d.operators.is_array() && !d.operators.empty() &&
      !(d.operators[0].is_object() && d.operators[0].contains("id_user"))) {
    d.warnings.emplace_back("operators[0] has no id_user");
  }
  return d;
}

Json to_json(const FireReport& report) {
  Json out = Json::object();
  out["event"] = report.event;
  out["project_id"] = report.project_id;
  out["timestamp"] = report.timestamp;
  out["finished"] = report.finished;
  Json deliveries = Json::array();
  for (const auto& d : report.deliveries) {
    Json j = Json::object();
    j["subscription_id"] = d.subscription_id;
    j["target"] = loggable_url(d.target);
    j["global"] = d.global;
    if (!d.error.empty()) j["error"] = d.error;
    if (report.finished) {
      j["finish_order"] = d.finish_order;
      j["final_status"] = d.attempts.empty() ? Json(nullptr) : Json(d.attempts.back().status);
    }
    Json attempts = Json::array();
    for (std::size_t i = 0; i < d.attempts.size(); ++i) {
      const auto& a = d.attempts[i];
      Json aj = Json::object();
      aj["attempt"] = i + 1;
      aj["status"] = a.status;
      aj["error"] = a.error.empty() ? Json(nullptr) : Json(a.error);
      aj["started_ms"] = ms_between(report.started, a.started);
      aj["finished_ms"] = ms_between(report.started, a.finished);
      aj["duration_ms"] = ms_between(a.started, a.finished);
      aj["delay_ms"] = a.planned_delay_ms;
      attempts.push_back(std::move(aj));
    }
    j["attempts"] = std::move(attempts);
    deliveries.push_back(std::move(j));
  }
  out["deliveries"] = std::move(deliveries);
  if (report.operator_select) {
    const auto& o = *report.operator_select;
    Json oj = Json::object();
    oj["decision"] = o.replaced ? "replaced" : "default";
    oj["reason"] = o.reason;
    if (o.replaced) oj["operators"] = o.operators;
    if (!o.warnings.empty()) oj["warnings"] = o.warnings;
    out["operator_select"] = std::move(oj);
  }
  return out;
}

struct Firer::Job {
  Subscription sub;
  DeliveryRequest request;
  std::string retry_body;  // --compat: what Tiledesk's shared body holds when a retry goes out
  std::string error;
};

struct Firer::Batch {
  std::string project_id, event;
  std::int64_t timestamp = 0;
  std::chrono::steady_clock::time_point started;
  std::mutex mutex;
  std::condition_variable done;
  std::vector<DeliveryReport> reports;
  std::size_t finished = 0;
  std::optional<OperatorDecision> decision;
};

Firer::~Firer() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

Result<FireReport> Firer::fire(const std::string& project_id, const std::string& event,
                               const std::string& payload_json, bool wait) {
  if (auto js = to_js_json(payload_json); !js) {
    return Error{ErrorCode::invalid_input, "the payload is not valid JSON"};
  }
  auto subs = store_.matching(event, project_id);
  if (!subs) return std::move(subs).error();
  auto batch = std::make_shared<Batch>();
  batch->project_id = project_id;
  batch->event = event;
  batch->started = std::chrono::steady_clock::now();
  batch->timestamp = now_ms();  // once per occurrence, for every subscription and retry
  std::vector<Job> jobs;
  std::string abort_reason;
  for (const auto& sub : *subs) {
    Job job{sub, {}, {}, {}};
    job.request.url = sub.target.value_or("");
    job.request.secret = sub.secret.value_or("");
    job.request.origin = options_.origin;
    job.request.timeout = options_.timeout;
    if (!abort_reason.empty()) {
      job.error = abort_reason;
    } else if (!sub.is_global() && !sub.secret) {
      job.error = "the subscription has no secret: signing throws (reference §2.3)";
    } else {
      const SigningKey key =
          sub.is_global() ? options_.global_key : SigningKey{Algorithm::hs256, *sub.secret};
      const std::string hook = dump(sub.public_json());
      auto body = build_notification({payload_json, hook, batch->timestamp, sub.is_global()}, key);
      if (body) {
        job.request.body = std::move(*body);
      } else {
        job.error = "signing failed: " + body.error().detail;
      }
    }
    // Tiledesk signs in one synchronous loop; a throw skips the rest of the batch (§2.2).
    if (options_.compat && !job.error.empty() && abort_reason.empty()) {
      abort_reason = "skipped: an earlier subscription of the batch failed to sign";
    }
    jobs.push_back(std::move(job));
  }
  if (options_.compat) {
    std::string last_body;
    for (const auto& j : jobs) {
      if (!j.request.body.empty()) last_body = j.request.body;
    }
    for (auto& j : jobs) j.retry_body = last_body;
  }
  batch->reports.resize(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    batch->reports[i].subscription_id = jobs[i].sub.id;
    batch->reports[i].target = jobs[i].request.url;
    batch->reports[i].global = jobs[i].sub.is_global();
  }
  FireReport report;
  report.project_id = project_id;
  report.event = event;
  report.timestamp = batch->timestamp;
  report.started = batch->started;
  report.deliveries = batch->reports;
  log_.info("fire", {{"event", event},
                     {"project_id", project_id},
                     {"timestamp", batch->timestamp},
                     {"subscriptions", jobs.size()}});
  if (event == "operator.select" && jobs.empty()) {
    batch->decision = decide_operator(nullptr);
    log_.info("operator.select", {{"decision", "default"}, {"reason", batch->decision->reason}});
  }
  {
    std::lock_guard lock(mutex_);
    running_ += static_cast<int>(jobs.size());
  }
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    std::thread([this, batch, i, job = std::move(jobs[i])]() mutable {
      run_job(batch, i, std::move(job));
    }).detach();
  }
  if (wait) {
    std::unique_lock lock(batch->mutex);
    batch->done.wait(lock, [&] { return batch->finished == batch->reports.size(); });
    report.deliveries = batch->reports;
    report.finished = true;
    report.operator_select = batch->decision;
  }
  return report;
}

void Firer::run_job(const std::shared_ptr<Batch>& batch, std::size_t index, Job job) {
  DeliveryReport report;
  report.subscription_id = job.sub.id;
  report.target = job.request.url;
  report.global = job.sub.is_global();
  report.error = job.error;
  const std::string log_target = loggable_url(job.request.url);
  if (job.error.empty()) {
    RetryPolicy policy;
    policy.scale = options_.retry_scale;
    policy.jitter = options_.jitter;
    policy.on_attempt = [&](int number, const AttemptResult& a) {
      Json f = {{"event", batch->event}, {"subscription", job.sub.id},
                {"target", log_target},  {"attempt", number},
                {"status", a.status},    {"ms", ms_between(a.started, a.finished)}};
      if (!a.error.empty()) f["error"] = a.error;
      log_.info("attempt", f);
      // Tiledesk re-serializes one shared body object on a retry; by then it holds the last
      // subscription's hook and token (§3.5). The x-hook-secret header stays this one's.
      if (!job.retry_body.empty()) job.request.body = job.retry_body;
    };
    const DeliveryRequest& request = job.request;
    report.attempts = deliver(request, policy).attempts;
    record(*batch, job, report);
  } else {
    log_.warn("not sent",
              {{"event", batch->event}, {"subscription", job.sub.id}, {"reason", job.error}});
  }
  {
    std::lock_guard lock(batch->mutex);
    report.finish_order = static_cast<int>(batch->finished++);
    if (batch->event == "operator.select" && report.finish_order == 0) {
      batch->decision = decide_operator(&report);
      Json f = {{"decision", batch->decision->replaced ? "replaced" : "default"},
                {"reason", batch->decision->reason},
                {"subscription", job.sub.id}};
      if (batch->decision->replaced) f["operators"] = batch->decision->operators;
      log_.info("operator.select", f);
    }
    batch->reports[index] = std::move(report);
    batch->done.notify_all();
  }
  std::lock_guard lock(mutex_);
  --running_;
  idle_.notify_all();
}

void Firer::record(const Batch& batch, const Job& job, const DeliveryReport& report) {
  const AttemptResult& last = report.attempts.back();
  HistoryEntry e;
  e.id = new_object_id();
  e.event = job.sub.event.value_or("");
  e.target = job.sub.target.value_or("");
  e.id_project = job.sub.id_project.value_or("");
  const std::string& sent = job.request.body;  // after a retry in --compat: the shared body
  e.json_request = options_.compat ? sent : redact_token(sent);
  if (last.status != 0) {
    Json headers = Json::object();
    if (!last.content_type.empty()) headers["content-type"] = last.content_type;
    auto target = parse_target(job.request.url);
    Json req_headers = Json::object();
    req_headers["Content-Type"] = "application/json";
    req_headers["x-hook-secret"] = options_.compat ? job.request.secret : "[redacted]";
    req_headers["User-Agent"] = "tiledesk-webhooks";
    req_headers["Origin"] = job.request.origin;
    req_headers["host"] = target ? target->host_header : "";
    req_headers["accept"] = "application/json";
    req_headers["content-length"] = sent.size();
    Json response = Json::object();
    response["statusCode"] = last.status;
    if (!last.body.empty()) response["body"] = parsed_body(last.body);
    response["headers"] = std::move(headers);
    response["request"] = {
        {"uri", uri_json(job.request.url)}, {"method", "POST"}, {"headers", req_headers}};
    e.response = dump(response);
    if (!last.body.empty()) e.body = dump(parsed_body(last.body));
  } else {
    e.err = "Error: " + last.error;
  }
  e.created_at = e.updated_at = iso_time(now_ms());
  if (auto st = store_.add_history(e); !st) {
    log_.warn("history not written", {{"error", st.error().detail}});
  }
  (void)batch;
}

}  // namespace tdhook::tools::sim
