#include "intake/server.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>

#include "delivery/dispatcher.hpp"
#include "http/http_loop.hpp"
#include "intake/status.hpp"
#include "store/dedup_cache.hpp"
#include "store/record.hpp"
#include "store/spool_writer.hpp"

namespace tdhook::receiver {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view json_type = "application/json";

// Keys of recently stored events kept in memory (about 2 MiB): Tiledesk retries within minutes.
constexpr std::size_t kRecentKeys = 8192;

// "application/json" with any parameters (charset=utf-8), in any case.
bool is_json_content_type(std::string_view value) {
  const auto semicolon = value.find(';');
  auto type = value.substr(0, semicolon);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  if (type.size() != json_type.size()) return false;
  for (std::size_t i = 0; i < type.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(type[i])) != json_type[i]) return false;
  }
  return true;
}

std::string error_body(std::string_view reason) {
  return R"({"ok":false,"error":")" + std::string(reason) + "\"}";
}

// What a log line says about the request it is about.
struct RequestInfo {
  std::string_view method, path, remote;
};

}  // namespace

// The receiver's request handling, independent of the transport: the event loop calls on_head()
// and handle() for plain HTTP and HTTPS alike.
struct HttpServer::Impl final : HttpHandler {
  const Config& config;
  const LiveSettings& live;
  Store& spool;
  const ReplyRunner& replies;
  Metrics& metrics;
  const Logger& log;
  RequestObserver* observer;
  std::vector<std::string> forward_sinks;  // names of the forward: sinks (they need the original)
  DedupCache recent;                       // keys committed lately (retries answered inline)
  std::unique_ptr<SpoolWriter> writer;     // group commit
  std::unique_ptr<HttpLoop> loop;          // plain HTTP or HTTPS
  int port = 0;
  std::atomic<bool> stop_requested{false};

  explicit Impl(const ServerParts& p)
      : config(p.config),
        live(p.live),
        spool(p.spool),
        replies(p.replies),
        metrics(p.metrics),
        log(p.log),
        observer(p.observer),
        recent(kRecentKeys, p.config.dedup_window),
        writer(std::make_unique<SpoolWriter>(p.spool)) {
    for (const auto& sink : p.config.sinks) {
      if (sink_needs_original(sink)) forward_sinks.push_back(sink.name);
    }
  }
  ~Impl() override {
    // The writer first: a completion it is still running may be posting to an event loop
    // (EventLoop::post wakes the loop after the loop may already have taken the answer and
    // ended), so the loops must outlive the writer thread.
    writer.reset();
    loop.reset();
  }

  HttpResponse answer(const RequestInfo& info, HttpOutcome outcome, std::string body,
                      std::string_view detail = {}) const {
    metrics.count_request(outcome.status, outcome.reason);
    if (outcome.status >= 400) {
      LogFields fields;
      fields.add("status", outcome.status).add("reason", outcome.reason);
      if (!info.method.empty()) fields.add("method", info.method).add("path", info.path);
      fields.add("remote", info.remote);
      if (!detail.empty()) fields.add("detail", detail);
      if (outcome.status >= 500)
        log.error("request failed", fields);
      else
        log.warn("request rejected", fields);
    }
    HttpResponse res;
    res.status = outcome.status;
    res.body = std::move(body);
    return res;
  }

  // --- the observer (inspector) --------------------------------------------------------------
  // The observer copies what it keeps from views into the request: nothing is moved out of it
  // or allocated for it here.

  // A request refused from its head alone (404, 405) or before it (400, 413 from the parser).
  static ObservedRequest seen(std::string_view remote, const HttpRequestHead* head) {
    ObservedRequest o;
    o.received_at_ms = now_ms();
    o.remote = remote;
    if (head != nullptr) {
      o.method = head->method;
      o.target = head->target;
      o.headers = head->fields;
    }
    return o;
  }

  // A request whose body was read.
  static ObservedRequest seen(const HttpRequest& request) {
    auto o = seen(request.remote, &request.head);
    o.body = request.body;
    o.body_read = true;
    return o;
  }

  // A verified request: what its envelope says as well (`event` must outlive the report).
  static ObservedRequest seen(const HttpRequest& request, const Event& event) {
    auto o = seen(request);
    o.event = event.name();
    o.project_id = event.hook().project_id;
    return o;
  }

  void report(const ObservedRequest& request, HttpOutcome outcome, std::string_view detail = {},
              std::string_view delivery_id = {}) const {
    observer->on_request(request,
                         ObservedOutcome{outcome.status, outcome.reason, detail, delivery_id});
  }

  // --- HttpHandler -------------------------------------------------------------------------

  std::optional<HttpResponse> on_head(const HttpRequestHead& head,
                                      std::string_view remote) override {
    const auto path = head.path();
    const RequestInfo info{head.method, path, remote};
    const bool ops = path == "/healthz" || path == "/metrics";
    if (ops && path != config.path) {
      if (head.method == "GET" || head.method == "HEAD") {
        return path == "/healthz" ? healthz(info) : metrics_page();
      }
      auto res = answer(info, outcomes::method_not_allowed,
                        error_body(outcomes::method_not_allowed.reason));
      res.headers.emplace_back("Allow", "GET");
      return res;
    }
    if (path != config.path) {
      if (observer != nullptr && !ops) {
        report(seen(remote, &head), outcomes::not_found,
               "no receiver at this path (--path is " + config.path + ")");
      }
      return answer(info, outcomes::not_found, error_body(outcomes::not_found.reason));
    }
    if (head.method != "POST") {
      if (observer != nullptr)
        report(seen(remote, &head), outcomes::method_not_allowed, "Tiledesk sends POST");
      auto res = answer(info, outcomes::method_not_allowed,
                        error_body(outcomes::method_not_allowed.reason));
      res.headers.emplace_back("Allow", "POST");
      return res;
    }
    return std::nullopt;
  }

  HttpResponse on_error(const HttpError& error, std::string_view remote) override {
    if (observer != nullptr)
      report(seen(remote, nullptr), HttpOutcome{error.status, error.reason}, error.detail);
    return answer(RequestInfo{{}, {}, remote}, HttpOutcome{error.status, error.reason},
                  error_body(error.reason), error.detail);
  }

  void handle(HttpRequest& request, Responder respond) override {
    const auto& head = request.head;
    const RequestInfo info{head.method, head.path(), request.remote};
    const auto* content_type = head.find("Content-Type");
    if (content_type == nullptr || !is_json_content_type(*content_type)) {
      const std::string detail = "Content-Type: " + (content_type ? *content_type : std::string());
      if (observer != nullptr) report(seen(request), outcomes::unsupported_media_type, detail);
      return respond(answer(info, outcomes::unsupported_media_type,
                            error_body(outcomes::unsupported_media_type.reason), detail));
    }
    // The settings this request is judged by, to its end (a SIGHUP may swap them meanwhile).
    const auto settings = live.get();
    auto event = authenticate(*settings, head, request.body);
    if (!event) {
      const auto outcome = outcome_for(event.error().code);
      if (observer != nullptr) report(seen(request), outcome, event.error().detail);
      return respond(answer(
          info, outcome,
          outcome.status == 401 ? std::string(unauthorized_body) : error_body(outcome.reason),
          event.error().detail));
    }
    accept(info, request, *settings, std::move(*event), std::move(respond));
  }

  // --- the POST path -------------------------------------------------------------------------

  static Result<Event> authenticate(const LiveConfig& settings, const HttpRequestHead& head,
                                    std::string_view body) {
    const auto& verifier = settings.verifier;
    if (!verifier) return Event::parse(body);
    std::optional<std::string_view> secret;
    if (const auto* value = head.find("x-hook-secret")) secret = *value;
    return verifier->verify(secret, body);
  }

  std::vector<std::string> sinks_for(std::string_view event) const {
    std::vector<std::string> names;
    for (const auto& sink : config.sinks) {
      if (sink.filter.empty() || sink.filter.matches(event)) names.push_back(sink.name);
    }
    return names;
  }

  // --no-verify is not reloadable: whether events are verified is fixed at start.
  std::string verified_text(const Event& event) const {
    return !config.no_verify ? event.verification().describe() : std::string("none");
  }

  // Verified: filtered out, unrouted, or stored (the answer waits for the spool's commit).
  // The event owns a copy of the body: `request` is only the observer's from here on.
  void accept(const RequestInfo& info, HttpRequest& request, const LiveConfig& settings,
              Event event, Responder respond) {
    const auto* reply = replies.find(event.name());
    if (!settings.events.empty() && !settings.events.matches(event.name())) {
      log.debug("event filtered out", LogFields().add("event", event.name()));
      if (observer != nullptr) {
        report(seen(request, event), outcomes::filtered,
               "not in --events (" + settings.events_text + ")");
      }
      return finish(outcomes::filtered, R"({"ok":true,"stored":false})", std::move(event), reply,
                    {}, {}, std::move(respond));
    }
    auto sinks = sinks_for(event.name());
    if (sinks.empty()) {
      if (observer != nullptr)
        report(seen(request, event), outcomes::unrouted, "no sink's filter takes this event");
      auto record = build_record(event, RecordOptions{new_delivery_id(), now_ms(),
                                                      verified_text(event), config.keep_token});
      return finish(outcomes::unrouted, R"({"ok":true,"stored":false})", std::move(event), reply,
                    std::move(record), {}, std::move(respond));
    }
    NewEvent item;
    item.received_at_ms = now_ms();
    item.dedup_key = dedup_key(event);
    if (auto first = recent.find(item.dedup_key, item.received_at_ms)) {
      if (observer != nullptr) {
        report(seen(request, event), outcome_for(PutOutcome::duplicate),
               "a retry of an event stored lately", *first);
      }
      return answer_duplicate(std::move(*first), std::move(event), reply, std::move(respond));
    }
    item.delivery_id = new_delivery_id();
    item.event = event.name();
    item.project_id = event.hook().project_id;
    item.subscription_id = event.hook().id;
    item.timestamp_ms = event.timestamp();
    const bool forwarded = std::any_of(sinks.begin(), sinks.end(), [this](const std::string& s) {
      return std::find(forward_sinks.begin(), forward_sinks.end(), s) != forward_sinks.end();
    });
    if (forwarded) item.original = build_original(request.head.fields, request.body);
    // The observer copies the request now: the answer comes on the writer's thread, after the
    // event loop has discarded the request.
    RequestObserver::Ticket ticket = 0;
    if (observer != nullptr) {
      auto o = seen(request, event);
      o.sinks = sinks;
      ticket = observer->begin(o);
    }
    item.sinks = std::move(sinks);
    item.record = build_record(event, RecordOptions{item.delivery_id, item.received_at_ms,
                                                    verified_text(event), config.keep_token});
    auto record = reply != nullptr ? item.record : std::string();
    // What the completion needs: the event itself only when a reply command will see it.
    std::optional<Event> kept;
    if (reply != nullptr) kept.emplace(std::move(event));
    const std::string event_name = item.event;
    // Copied before the put: the order in which a call's arguments are made is unspecified.
    std::string key = item.dedup_key;
    const std::int64_t received_at = item.received_at_ms;
    writer->put(std::move(item), [this, remote = std::string(info.remote), event_name, reply,
                                  key = std::move(key), received_at, kept = std::move(kept),
                                  record = std::move(record), ticket,
                                  respond = std::move(respond)](PutResult put) mutable {
      const auto outcome = outcome_for(put.outcome);
      if (observer != nullptr) {
        observer->settle(
            ticket, ObservedOutcome{outcome.status, outcome.reason, put.error, put.delivery_id});
      }
      if (outcome.status != 200) {
        auto res = answer(RequestInfo{"POST", config.path, remote}, outcome,
                          error_body(outcome.reason), put.error);
        res.headers.emplace_back("Retry-After", std::to_string(retry_after_seconds));
        return respond(std::move(res));
      }
      const bool stored = put.outcome == PutOutcome::stored;
      if (stored) {
        recent.remember(key, put.delivery_id, received_at);
        metrics.count_stored();
      } else {
        metrics.count_duplicate();
      }
      if (log.enabled(LogLevel::debug)) {
        log.debug(stored ? "event stored" : "duplicate event",
                  LogFields().add("id", put.delivery_id).add("event", event_name));
      }
      std::string body = R"({"ok":true,"id":")" + put.delivery_id + "\"";
      if (!stored) body += R"(,"duplicate":true)";
      body += '}';
      if (reply == nullptr) return respond(answer({}, outcome, std::move(body)));
      if (!stored) {
        // The record the reply command sees names the delivery id that was stored.
        record = build_record(*kept, RecordOptions{put.delivery_id, now_ms(), verified_text(*kept),
                                                   config.keep_token});
      }
      finish(outcome, std::move(body), std::move(*kept), reply, std::move(record),
             std::move(put.delivery_id), std::move(respond));
    });
  }

  // A retry of an event committed lately (DedupCache): answered as the spool would.
  void answer_duplicate(std::string delivery_id, Event event, const ReplyRule* reply,
                        Responder respond) {
    metrics.count_duplicate();
    if (log.enabled(LogLevel::debug)) {
      log.debug("duplicate event", LogFields().add("id", delivery_id).add("event", event.name()));
    }
    std::string body = R"({"ok":true,"id":")" + delivery_id + R"(","duplicate":true})";
    finish(outcome_for(PutOutcome::duplicate), std::move(body), std::move(event), reply, {},
           std::move(delivery_id), std::move(respond));
  }

  // Answers a verified event: with the reply command's output when there is one (run on a
  // worker thread: it may take up to --reply-timeout).
  void finish(HttpOutcome outcome, std::string body, Event event, const ReplyRule* reply,
              std::string record, std::string delivery_id, Responder respond) {
    if (reply == nullptr) return respond(answer({}, outcome, std::move(body)));
    auto task = [this, outcome, event = std::move(event), reply, record = std::move(record),
                 delivery_id = std::move(delivery_id), respond = std::move(respond)]() mutable {
      if (record.empty()) {
        record = build_record(
            event, RecordOptions{delivery_id, now_ms(), verified_text(event), config.keep_token});
      }
      auto result =
          replies.run(*reply, ReplyContext{event.name(), delivery_id, event.hook().project_id,
                                           event.hook().id, event.timestamp(), record});
      respond(answer({}, outcome, std::move(result.body)));
    };
    loop->run_blocking(std::move(task));
  }

  HttpResponse healthz(const RequestInfo& info) const {
    const std::string store = spool.health_json();
    if (spool.writable()) {
      return answer(info, HttpOutcome{200, "healthz"},
                    store.empty() ? R"({"ok":true})" : R"({"ok":true,"store":)" + store + "}");
    }
    if (store.empty()) {
      return answer(info, HttpOutcome{503, "healthz_spool_not_writable"},
                    error_body("spool_not_writable"));
    }
    return answer(info, HttpOutcome{503, "healthz_store_unavailable"},
                  R"({"ok":false,"error":"store_unavailable","store":)" + store + "}");
  }

  HttpResponse metrics_page() const {
    metrics.set_spool_pending(spool.pending_total());
    metrics.set_store_bytes(spool.disk_bytes());
    HttpResponse res;
    res.content_type = "text/plain; version=0.0.4";
    res.body = metrics.render() + spool.metrics_text();
    return res;
  }

  Status setup_loop() {
    HttpLoopOptions options;
    options.host = config.host;
    options.port = config.port;
    options.limits.max_body = config.max_body;
    options.read_timeout = config.read_timeout;
    options.write_timeout = config.write_timeout;
    options.workers = config.threads;
    options.max_connections = config.max_connections;
    // HTTPS: each new connection takes the context of the settings in force (SIGHUP swaps it).
    if (!config.tls_cert.empty()) {
      options.tls = [this] { return live.get()->tls; };
      // Counted; logged the 1st, 10th, 100th ... time for each reason (a port on the internet
      // sees scanners all day: the log stays short, the count exact).
      options.on_tls_failure = [this](std::string_view reason) {
        const auto n = metrics.count_tls_failure(reason);
        std::uint64_t power = 1;
        while (power < n && power <= UINT64_MAX / 10) power *= 10;
        if (power == n) {
          log.warn("TLS handshake failed",
                   LogFields().add("reason", reason).add("times", static_cast<std::int64_t>(n)));
        }
      };
    }
    auto bound = HttpLoop::bind(options, *this);
    if (!bound) return std::move(bound).error();
    loop = std::move(*bound);
    port = loop->port();
    return Ok{};
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

Result<std::unique_ptr<HttpServer>> HttpServer::start(const ServerParts& parts) {
  auto impl = std::make_unique<Impl>(parts);
  if (auto st = impl->setup_loop(); !st) return std::move(st).error();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const noexcept { return impl_->port; }

bool HttpServer::run() {
  auto& impl = *impl_;
  if (impl.stop_requested.load()) return true;
  return impl.loop->run() || impl.stop_requested.load();
}

void HttpServer::shutdown() {
  impl_->stop_requested.store(true);
  impl_->loop->shutdown();
}

}  // namespace tdhook::receiver
