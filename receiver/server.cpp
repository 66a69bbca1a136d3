#include "server.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <thread>

#include "http_connection.hpp"
#include "record.hpp"
#include "status.hpp"

namespace tdhook::receiver {
namespace {

using httplib::Request;
using httplib::Response;
using SteadyClock = std::chrono::steady_clock;

constexpr int listen_backlog = 4096;
constexpr std::chrono::milliseconds accept_grace{200};
constexpr std::size_t keep_alive_max_count = 1000;
constexpr std::string_view json_type = "application/json";

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

bool has_body(const Request& req) {
  return req.has_header("Transfer-Encoding") ||
         (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
}

std::string error_body(std::string_view reason) {
  return R"({"ok":false,"error":")" + std::string(reason) + "\"}";
}

}  // namespace

struct HttpServer::Impl {
  const Config& config;
  const std::optional<Verifier>& verifier;
  Spool& spool;
  const ReplyRunner& replies;
  Metrics& metrics;
  const Logger& log;
  std::unique_ptr<httplib::Server> server;
  DrainableServer* drainable = nullptr;  // the plain-HTTP server; TLS keeps httplib's own loop
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stop_requested{false};
  std::atomic<int> run_state{0};  // 0 not started, 1 running, 2 returned

  explicit Impl(const ServerParts& p)
      : config(p.config),
        verifier(p.verifier),
        spool(p.spool),
        replies(p.replies),
        metrics(p.metrics),
        log(p.log) {}

  void answer(const Request& req, Response& res, HttpOutcome outcome, std::string body,
              std::string_view detail = {}) const {
    res.status = outcome.status;
    res.set_content(std::move(body), std::string(json_type));
    metrics.count_request(outcome.status, outcome.reason);
    if (outcome.status >= 400) {
      LogFields fields;
      fields.add("status", outcome.status)
          .add("reason", outcome.reason)
          .add("method", req.method)
          .add("path", req.path)
          .add("remote", req.remote_addr);
      if (!detail.empty()) fields.add("detail", detail);
      if (outcome.status >= 500)
        log.error("request failed", fields);
      else
        log.warn("request rejected", fields);
    }
  }

  // Answered without reading the body: the connection cannot be reused.
  void answer_and_close(const Request& req, Response& res, HttpOutcome outcome,
                        std::string_view detail = {}) const {
    res.set_header("Connection", "close");
    close_connection_after_response();
    answer(req, res, outcome, error_body(outcome.reason), detail);
  }

  httplib::Server::HandlerResponse pre_route(const Request& req, Response& res) const {
    using HR = httplib::Server::HandlerResponse;
    const bool ops = req.path == "/healthz" || req.path == "/metrics";
    if (ops && req.path != config.path) {
      if (req.method == "GET" || req.method == "HEAD") return HR::Unhandled;
      res.set_header("Allow", "GET");
      reject_early(req, res, outcomes::method_not_allowed);
      return HR::Handled;
    }
    if (req.path != config.path) {
      reject_early(req, res, outcomes::not_found);
      return HR::Handled;
    }
    if (req.method != "POST") {
      res.set_header("Allow", "POST");
      reject_early(req, res, outcomes::method_not_allowed);
      return HR::Handled;
    }
    return HR::Unhandled;
  }

  void reject_early(const Request& req, Response& res, HttpOutcome outcome) const {
    if (has_body(req)) {
      answer_and_close(req, res, outcome);
    } else {
      answer(req, res, outcome, error_body(outcome.reason));
    }
  }

  // Reads the body into `body`, never more than --max-body bytes (chunked or compressed bodies
  // included). Returns the outcome to answer when it cannot.
  std::optional<HttpOutcome> read_body(const Request& req, const httplib::ContentReader& reader,
                                       std::string& body) const {
    bool too_large = false;
    const bool ok = reader([&](const char* data, size_t size) {
      if (body.size() + size > config.max_body) {
        too_large = true;
        return false;
      }
      body.append(data, size);
      return true;
    });
    (void)req;
    if (too_large) return outcomes::too_large;
    if (!ok) return outcomes::bad_request;
    return std::nullopt;
  }

  void handle_post(const Request& req, Response& res, const httplib::ContentReader& reader) const {
    std::uint64_t length = 0;
    if (req.has_header("Content-Length")) {
      const auto text = req.get_header_value("Content-Length");
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), length);
      if (ec != std::errc() || end != text.data() + text.size()) {
        return answer_and_close(req, res, outcomes::bad_request, "bad Content-Length");
      }
      if (length > config.max_body) {
        return answer_and_close(req, res, outcomes::too_large,
                                "Content-Length " + text + " > --max-body");
      }
    }
    std::string body;
    body.reserve(static_cast<std::size_t>(length));
    if (auto failed = read_body(req, reader, body)) {
      return answer_and_close(req, res, *failed);
    }
    if (!is_json_content_type(req.get_header_value("Content-Type"))) {
      return answer(req, res, outcomes::unsupported_media_type,
                    error_body(outcomes::unsupported_media_type.reason),
                    "Content-Type: " + req.get_header_value("Content-Type"));
    }
    auto event = authenticate(req, body);
    if (!event) {
      const auto outcome = outcome_for(event.error().code);
      return answer(
          req, res, outcome,
          outcome.status == 401 ? std::string(unauthorized_body) : error_body(outcome.reason),
          event.error().detail);
    }
    accept(req, res, *event);
  }

  Result<Event> authenticate(const Request& req, std::string_view body) const {
    if (!verifier) return Event::parse(body);
    std::optional<std::string_view> secret;
    const auto it = req.headers.find("x-hook-secret");
    if (it != req.headers.end()) secret = it->second;
    return verifier->verify(secret, body);
  }

  std::vector<std::string> sinks_for(std::string_view event) const {
    std::vector<std::string> names;
    for (const auto& sink : config.sinks) {
      if (sink.filter.empty() || sink.filter.matches(event)) names.push_back(sink.name);
    }
    return names;
  }

  void accept(const Request& req, Response& res, const Event& event) const {
    const auto* reply = replies.find(event.name());
    if (!config.events.empty() && !config.events.matches(event.name())) {
      log.debug("event filtered out", LogFields().add("event", event.name()));
      return respond(req, res, outcomes::filtered, R"({"ok":true,"stored":false})", event, reply,
                     "");
    }
    NewEvent item;
    item.delivery_id = new_delivery_id();
    item.event = event.name();
    item.project_id = event.hook().project_id;
    item.subscription_id = event.hook().id;
    item.timestamp_ms = event.timestamp();
    item.received_at_ms = now_ms();
    item.sinks = sinks_for(event.name());
    const std::string verified = verifier ? event.verification().describe() : "none";
    item.record = build_record(
        event, RecordOptions{item.delivery_id, item.received_at_ms, verified, config.keep_token});
    if (item.sinks.empty()) {
      return respond(req, res, outcomes::unrouted, R"({"ok":true,"stored":false})", event, reply,
                     item.record);
    }
    item.dedup_key = dedup_key(event);
    const auto started = SteadyClock::now();
    auto record = reply != nullptr ? item.record : std::string();
    const auto put = spool.put(std::move(item));
    const auto outcome = outcome_for(put.outcome);
    if (outcome.status != 200) {
      res.set_header("Retry-After", std::to_string(retry_after_seconds));
      return answer(req, res, outcome, error_body(outcome.reason), put.error);
    }
    if (put.outcome == PutOutcome::stored)
      metrics.count_stored();
    else
      metrics.count_duplicate();
    log.debug(put.outcome == PutOutcome::stored ? "event stored" : "duplicate event",
              LogFields()
                  .add("id", put.delivery_id)
                  .add("event", event.name())
                  .add("us", static_cast<std::int64_t>(
                                 std::chrono::duration_cast<std::chrono::microseconds>(
                                     SteadyClock::now() - started)
                                     .count())));
    if (reply != nullptr && put.outcome == PutOutcome::duplicate) {
      // The record the reply command sees names the delivery id that was stored.
      record = build_record(event,
                            RecordOptions{put.delivery_id, now_ms(), verified, config.keep_token});
    }
    std::string body = R"({"ok":true,"id":")" + put.delivery_id + "\"";
    if (put.outcome == PutOutcome::duplicate) body += R"(,"duplicate":true)";
    body += '}';
    respond(req, res, outcome, std::move(body), event, reply, record, put.delivery_id);
  }

  // Answers a verified event: with the reply command's output when there is one.
  void respond(const Request& req, Response& res, HttpOutcome outcome, std::string body,
               const Event& event, const ReplyRule* reply, std::string_view record,
               std::string_view delivery_id = {}) const {
    if (reply == nullptr) return answer(req, res, outcome, std::move(body));
    std::string fallback;
    if (record.empty()) {
      fallback = build_record(
          event, RecordOptions{delivery_id, now_ms(),
                               verifier ? event.verification().describe() : std::string("none"),
                               config.keep_token});
      record = fallback;
    }
    auto result =
        replies.run(*reply, ReplyContext{event.name(), delivery_id, event.hook().project_id,
                                         event.hook().id, event.timestamp(), record});
    answer(req, res, outcome, std::move(result.body));
  }

  void handle_healthz(const Request& req, Response& res) const {
    if (spool.writable()) {
      return answer(req, res, HttpOutcome{200, "healthz"}, R"({"ok":true})");
    }
    answer(req, res, HttpOutcome{503, "healthz_spool_not_writable"},
           error_body("spool_not_writable"));
  }

  void handle_metrics(const Request&, Response& res) const {
    metrics.set_spool_pending(spool.pending_total());
    res.status = 200;
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
  }
};

namespace {

std::unique_ptr<httplib::Server> make_server(const Config& config, DrainableServer*& drainable) {
  if (!config.tls_cert.empty()) {
    return std::make_unique<httplib::SSLServer>(config.tls_cert.c_str(), config.tls_key.c_str());
  }
  auto server = std::make_unique<DrainableServer>();
  drainable = server.get();
  return server;
}

template <class Duration>
void set_timeouts(httplib::Server& server, Duration read, Duration write) {
  server.set_read_timeout(read / 1000, (read % 1000) * 1000);
  server.set_write_timeout(write / 1000, (write % 1000) * 1000);
}

}  // namespace

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

Result<std::unique_ptr<HttpServer>> HttpServer::start(const ServerParts& parts) {
  auto impl = std::make_unique<Impl>(parts);
  const Config& config = parts.config;
  impl->server = make_server(config, impl->drainable);
  auto& server = *impl->server;
  if (!server.is_valid()) {
    return Error{ErrorCode::invalid_config, "cannot load the TLS certificate " + config.tls_cert +
                                                " or key " + config.tls_key};
  }
  Impl* self = impl.get();
  // Debian's build keeps httplib's defaults: 8 threads, backlog 5, no body limit.
  const auto threads = config.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_keep_alive_max_count(keep_alive_max_count);
  server.set_tcp_nodelay(true);
  server.set_keep_alive_timeout(5);
  set_timeouts(server, config.read_timeout.count(), config.write_timeout.count());
  server.set_payload_max_length(static_cast<std::size_t>(config.max_body));
  server.set_socket_options([self](socket_t fd) {
    self->listen_fd = fd;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_expect_100_continue_handler([self](const Request& req, Response& res) {
    // curl sends Expect: 100-continue for large bodies: refuse before it sends them.
    std::uint64_t length = 0;
    const auto text = req.get_header_value("Content-Length");
    std::from_chars(text.data(), text.data() + text.size(), length);
    if (length > self->config.max_body) {
      self->answer_and_close(req, res, outcomes::too_large,
                             "Content-Length " + text + " > --max-body");
      return 413;
    }
    return 100;
  });
  server.set_pre_routing_handler(
      [self](const Request& req, Response& res) { return self->pre_route(req, res); });
  server.Post(".*", [self](const Request& req, Response& res, const httplib::ContentReader& r) {
    self->handle_post(req, res, r);
  });
  server.Get("/healthz",
             [self](const Request& req, Response& res) { self->handle_healthz(req, res); });
  server.Get("/metrics",
             [self](const Request& req, Response& res) { self->handle_metrics(req, res); });
  server.set_exception_handler([self](const Request& req, Response& res, std::exception_ptr) {
    self->answer(req, res, HttpOutcome{500, "internal_error"}, error_body("internal_error"));
  });

  const bool any_port = config.port == 0;
  const int bound = any_port ? server.bind_to_any_port(config.host)
                             : (server.bind_to_port(config.host, config.port) ? config.port : -1);
  if (bound <= 0 || impl->listen_fd < 0) {
    return Error{ErrorCode::invalid_config, "cannot listen on " + config.host + ":" +
                                                std::to_string(config.port) +
                                                " (address in use or not available)"};
  }
  // httplib listens with a backlog of 5: bursts of Connection: close deliveries overflow it.
  ::listen(impl->listen_fd, listen_backlog);
  impl->port = bound;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const noexcept { return impl_->port; }

bool HttpServer::run() {
  impl_->run_state.store(1);
  if (impl_->stop_requested.load()) {
    impl_->run_state.store(2);
    return true;
  }
  const bool ok = impl_->server->listen_after_bind();
  impl_->run_state.store(2);
  return ok || impl_->stop_requested.load();
}

void HttpServer::shutdown() {
  auto& impl = *impl_;
  impl.stop_requested.store(true);
  if (impl.drainable != nullptr) impl.drainable->begin_drain();
  if (impl.run_state.load() == 0) return;  // run() will see stop_requested and not listen
  while (impl.run_state.load() == 1 && !impl.server->is_running()) std::this_thread::yield();
  // Requests already on their way (a client between connect() and its first write, a burst
  // in the backlog) are still served for a moment, each answered with Connection: close.
  std::this_thread::sleep_for(accept_grace);
  // Connections the kernel has already accepted are taken by httplib's accept loop and then
  // served; closing the socket while some wait in the backlog would reset them.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(2);
  while (impl.listen_fd >= 0 && SteadyClock::now() < deadline) {
    pollfd p{impl.listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    std::this_thread::yield();
  }
  impl.server->stop();
}

}  // namespace tdhook::receiver
