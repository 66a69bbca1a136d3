// tdhook-receiver: configuration, then the spool, the dispatcher and the HTTP server, until
// SIGTERM/SIGINT. Signals are taken by a dedicated thread (sigwait), never by async handlers.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "config/config.hpp"
#include "delivery/dispatcher.hpp"
#include "delivery/process.hpp"
#include "delivery/reply.hpp"
#include "inspect/inspector.hpp"
#include "inspect/recorder.hpp"
#include "intake/server.hpp"
#include "store/admin.hpp"
#include "store/log/log_store.hpp"
#include "store/nats/fallback.hpp"
#include "store/nats/nats_store.hpp"

namespace tdhook::receiver {
namespace {

constexpr int exit_config = 2;
constexpr int exit_runtime = 1;

// The TLS certificate and key of --tls-cert/--tls-key, with --tls-min-version.
Result<std::shared_ptr<const TlsContext>> load_tls(const Config& config) {
  return TlsContext::load(TlsSettings{config.tls_cert, config.tls_key, config.tls_min_version});
}

// What a log line says of a TLS context: never anything of the key.
void add_tls_fields(LogFields& fields, const TlsContext& tls) {
  fields.add("tls_subject", tls.subject())
      .add("tls_not_after", tls.not_after())
      .add("tls_sha256", tls.fingerprint())
      .add("tls_min_version", to_string(tls.min_version()));
}

// What SIGHUP swaps in: the verifier (nullopt under --no-verify), the --events filter and the
// TLS context (with_tls: --check-config checks the TLS files on its own).
Result<std::shared_ptr<const LiveConfig>> make_live(const Config& config, const Logger& log,
                                                    bool with_tls = true) {
  auto live = std::make_shared<LiveConfig>();
  live->events = config.events;
  live->events_text = config.events_text;
  if (with_tls && !config.tls_cert.empty()) {
    auto tls = load_tls(config);
    if (!tls) return std::move(tls).error();
    live->tls = std::move(*tls);
  }
  if (config.no_verify) {
    log.warn(
        "--no-verify: events are NOT authenticated; anyone who can reach this port can "
        "inject events (local development only)");
    return std::shared_ptr<const LiveConfig>(std::move(live));
  }
  auto options = make_verifier_options(config.keys);
  if (!options) return std::move(options).error();
  if (options->secrets.empty() && options->global_keys.empty()) {
    return Error{ErrorCode::invalid_config,
                 "no secret configured: give --secret-file FILE or TDHOOK_SECRETS (or "
                 "--global-key / --global-secret-file); --no-verify is for local development only"};
  }
  live->secrets = options->secrets.size();
  live->global_keys = options->global_keys.size();
  auto verifier = Verifier::create(std::move(*options));
  if (!verifier) return std::move(verifier).error();
  live->verifier.emplace(std::move(*verifier));
  return std::shared_ptr<const LiveConfig>(std::move(live));
}

// SIGHUP: the command line and the --config file are read again, and the secrets, keys, --events
// filter and TLS certificate and key of the result replace the running ones, all of them or
// none: a file that does not load keeps the running set (logged, counted in
// tdhook_reloads_total). Every other option stays as it was at start.
struct Reloader {
  int argc;
  const char* const* argv;
  LiveSettings& live;
  Metrics& metrics;
  const Logger& log;

  void operator()() const {
    Config fresh;
    std::ostringstream out, err;
    const auto outcome = load_config(argc, argv, fresh, out, err);
    std::string problem;
    if (!outcome.run) {
      problem = err.str();
      while (!problem.empty() && problem.back() == '\n') problem.pop_back();
      if (problem.empty()) problem = "the command line or the --config file does not load";
    }
    std::shared_ptr<const LiveConfig> next;
    if (problem.empty()) {
      if (fresh.no_verify != !live.get()->verifier.has_value()) {
        problem = "--no-verify cannot change without a restart";
      } else if (fresh.tls_cert.empty() != !live.get()->tls) {
        problem = "HTTPS cannot be switched on or off without a restart (--tls-cert)";
      } else if (auto made = make_live(fresh, log); !made) {
        problem = made.error().detail;
      } else {
        next = std::move(*made);
      }
    }
    if (!next) {
      metrics.count_reload(false);
      log.error(
          "SIGHUP: reload failed, the running secrets, keys, --events and TLS certificate stay",
          LogFields().add("reason", problem));
      return;
    }
    live.set(next);
    metrics.count_reload(true);
    LogFields fields;
    fields.add("secrets", static_cast<std::int64_t>(next->secrets))
        .add("global_keys", static_cast<std::int64_t>(next->global_keys))
        .add("events", next->events_text.empty() ? "all" : next->events_text);
    if (next->tls) add_tls_fields(fields, *next->tls);
    log.info(next->tls ? "SIGHUP: reloaded secrets, keys, --events and the TLS certificate"
                       : "SIGHUP: reloaded secrets, keys and --events",
             fields);
  }
};

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Takes the handled signals until SIGTERM or SIGINT; SIGHUP reopens the file sinks, then runs
// `reload` (if any).
void wait_for_stop(Dispatcher& dispatcher, const Logger& log,
                   const std::function<void()>& reload = {}) {
  const auto set = handled_signals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      // Logged once requested: what a delivery does after this line sees the new file.
      dispatcher.reopen_files();
      log.info("SIGHUP: reopening file sinks");
      if (reload) reload();
      continue;
    }
    log.info("stopping", LogFields().add("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    return;
  }
}

// The store the configuration names: NATS JetStream with --store, else the embedded log.
Result<std::unique_ptr<Store>> open_store(const Config& config, const Logger& log) {
  if (config.store_url.empty()) {
    LogStoreOptions options;
    options.store.data_dir = config.data_dir;
    options.store.durability = config.durability;
    options.store.dedup_window = config.dedup_window;
    options.store.max_pending = config.max_pending;
    for (const auto& sink : config.sinks) options.store.sinks.push_back(sink.name);
    return open_log_store(options, log);
  }
  NatsStoreOptions options;
  options.url = config.store_url;
  options.stream = config.stream;
  options.replicas = config.replicas;
  options.creds_file = config.store_creds;
  options.ca_file = config.store_ca;
  options.timeout = config.store_timeout;
  options.dedup_window = config.dedup_window;
  options.max_pending = config.max_pending;
  for (const auto& sink : config.sinks) {
    NatsSinkOptions s;
    s.name = sink.name;
    s.in_order = sink_in_order(sink);
    // In order: one batch in flight across every worker, so batches are written one after
    // another. Side by side: as many as the workers run, a few times over.
    s.max_in_flight = s.in_order ? static_cast<int>(sink_batch_limit(sink))
                                 : std::max(64, sink_concurrency(sink) * 8);
    if (sink.spec.starts_with("exec")) {
      s.ack_wait = std::max(s.ack_wait, 2 * sink.exec_timeout + std::chrono::seconds(5));
    } else if (sink.spec.starts_with("http") || sink.spec.starts_with("forward:")) {
      s.ack_wait = std::max(s.ack_wait, 2 * sink.http_timeout + std::chrono::seconds(5));
    }
    options.sinks.push_back(std::move(s));
  }
  Result<std::unique_ptr<Store>> store = Error{ErrorCode::invalid_config, "no store"};
  // A --deliver-only worker takes no events: it has nothing to keep locally.
  if (config.store_fallback && !config.deliver_only) {
    FallbackOptions fallback;
    fallback.dir = config.data_dir / "fallback";
    fallback.durability = config.durability;
    fallback.dedup_window = config.dedup_window;
    fallback.max_pending = config.max_pending;
    fallback.max_age = config.store_fallback_max;
    store = open_nats_store_with_fallback(options, fallback, log);
  } else {
    store = open_nats_store(options, log);
  }
  if (store) {
    // What a 200 means here, said once at start.
    log.info("store: NATS JetStream",
             LogFields()
                 .add("url", config.store_url)
                 .add("stream", config.stream)
                 .add("replicas", config.replicas)
                 .add("a_200_means", nats_promise(config.replicas))
                 .add("fallback", config.store_fallback && !config.deliver_only
                                      ? "local: an event the stream does not take within "
                                        "--store-timeout is written to " +
                                            (config.data_dir / "fallback").string() +
                                            " and forwarded later"
                                      : std::string("off: 503 when the stream does not take an "
                                                    "event within --store-timeout")));
  }
  return store;
}

// Where the inspector's copy commands send: the receiver's own URL.
std::string receiver_url(const Config& config, int port) {
  std::string host = config.host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return (config.tls_cert.empty() ? "http://" : "https://") + host + ":" + std::to_string(port) +
         config.path;
}

// --inspect: the inspector's page and API, once the receiver listens (its URL is known).
Result<std::unique_ptr<inspect::Inspector>> start_inspector(const Config& config,
                                                            inspect::Recorder& recorder,
                                                            Store& store, Dispatcher& dispatcher,
                                                            int receiver_port, const Logger& log) {
  inspect::InspectorOptions options;
  options.host = config.inspect_host;
  options.port = config.inspect_port;
  options.token_file = config.inspect_token_file;
  options.view.mode = config.keys.mode;
  options.view.no_verify = config.no_verify;
  options.view.max_age_s = config.keys.max_age_s;
  options.view.events_text = config.events_text;
  options.view.path = config.path;
  options.view.receiver_url = receiver_url(config, receiver_port);
  if (!config.keys.secret_files.empty()) options.view.secret_file = config.keys.secret_files[0];
  auto inspector = inspect::Inspector::start(
      options, recorder, store, [&dispatcher] { dispatcher.wake(); }, log);
  if (!inspector) return inspector;
  const auto& host = config.inspect_host;
  const std::string addr = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                           std::to_string((*inspector)->port());
  log.info("inspector listening", LogFields()
                                      .add("addr", addr)
                                      .add("host", host)
                                      .add("port", (*inspector)->port())
                                      .add("url", (*inspector)->url())
                                      .add("token", !config.inspect_token_file.empty()));
  return inspector;
}

// --deliver-only: the dispatcher runs until SIGTERM/SIGINT; no HTTP.
int deliver_only(const Config& config, Store& store, const Logger& log) {
  if (!config.inspect_host.empty()) {
    log.warn("--inspect is ignored with --deliver-only: this worker takes no requests");
  }
  Metrics metrics;
  auto dispatcher = Dispatcher::start(store, config.sinks, log, metrics);
  if (!dispatcher) {
    log.error("cannot start the sinks", LogFields().add("reason", dispatcher.error().detail));
    return exit_config;
  }
  log.info("delivering", LogFields()
                             .add("store", config.store_url)
                             .add("sinks", static_cast<std::int64_t>(config.sinks.size())));
  wait_for_stop(**dispatcher, log);
  (*dispatcher)->stop();
  log.info("stopped");
  return 0;
}

// A file the receiver will read at start: "" when it can, else why not.
std::string unreadable(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return what + " " + path + ": " + std::strerror(errno);
  return {};
}

// --check-config: every problem found in the files the configuration names, or what would run.
// Opens no store, starts no thread, never listens.
int check_config(const Config& config, std::ostream& out, std::ostream& err) {
  std::vector<std::string> problems;
  const Logger quiet(LogLevel::error);
  auto live = make_live(config, quiet, /*with_tls=*/false);
  if (!live) problems.push_back(live.error().detail);
  std::shared_ptr<const TlsContext> tls;
  if (!config.tls_cert.empty()) {
    bool readable = true;
    for (const auto& [what, path] :
         {std::pair{"TLS certificate", config.tls_cert}, std::pair{"TLS key", config.tls_key}}) {
      if (auto why = unreadable(what, path); !why.empty()) {
        problems.push_back(why);
        readable = false;
      }
    }
    if (readable) {
      if (auto loaded = load_tls(config); !loaded) {
        problems.push_back(loaded.error().detail);
      } else {
        tls = std::move(*loaded);
      }
    }
  }
  if (!config.inspect_token_file.empty()) {
    if (auto why = unreadable("inspector token file", config.inspect_token_file); !why.empty())
      problems.push_back(why);
  }
  for (const auto& sink : config.sinks) {
    if (sink.spec.starts_with("file:")) {
      const std::filesystem::path file = sink.spec.substr(5);
      const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
      if (::access(dir.c_str(), W_OK) != 0) {
        problems.push_back("sink " + sink.name + ": cannot write in " + dir.string() + ": " +
                           std::strerror(errno));
      }
    }
    if (!sink.http_ca.empty()) {
      if (auto why = unreadable("sink " + sink.name + ": CA file", sink.http_ca); !why.empty())
        problems.push_back(why);
    }
  }
  if (config.store_url.empty()) {
    std::error_code ec;
    auto existing = std::filesystem::absolute(config.data_dir, ec);
    while (!existing.empty() && !std::filesystem::exists(existing, ec))
      existing = existing.parent_path();
    if (::access(existing.c_str(), W_OK) != 0) {
      problems.push_back("--data-dir " + config.data_dir.string() + ": cannot write in " +
                         existing.string() + ": " + std::strerror(errno));
    }
  }
  if (!problems.empty()) {
    for (const auto& p : problems) err << "tdhook-receiver: " << p << '\n';
    err << "tdhook-receiver: " << problems.size()
        << (problems.size() == 1 ? " problem" : " problems") << " found\n";
    return exit_config;
  }
  const auto& set = **live;
  out << "listen     " << config.host << ":" << config.port << config.path
      << (config.tls_cert.empty() ? "" : " (TLS)") << '\n';
  if (tls) {
    out << "tls        " << config.tls_cert << ", TLS " << to_string(tls->min_version())
        << " or later, ALPN http/1.1, certificate " << tls->subject() << " until "
        << tls->not_after() << '\n';
  }
  out << "verify     "
      << (set.verifier ? "--mode " + config.keys.mode + ", " + std::to_string(set.secrets) +
                             " secret(s), " + std::to_string(set.global_keys) + " global key(s)"
                       : std::string("OFF (--no-verify)"))
      << '\n';
  out << "events     " << (config.events_text.empty() ? "all" : config.events_text) << '\n';
  out << "store      "
      << (config.store_url.empty() ? "event log in " + config.data_dir.string()
                                   : config.store_url + " (stream " + config.stream + ")")
      << ", durability " << (config.durability == Durability::power ? "power" : "process") << '\n';
  if (config.store_fallback) {
    out << "fallback   local, in " << (config.data_dir / "fallback").string() << ", up to "
        << format_seconds(config.store_fallback_max) << '\n';
  }
  for (const auto& sink : config.sinks) {
    out << "sink       " << sink.name;
    if (sink.name != sink.spec) out << " = " << sink.spec;
    if (!sink.filter.empty()) out << " (filtered)";
    out << '\n';
  }
  for (const auto& reply : config.replies) out << "reply      " << reply.event << '\n';
  if (!config.inspect_host.empty()) {
    out << "inspector  " << config.inspect_host << ":" << config.inspect_port
        << (config.inspect_token_file.empty() ? "" : " (token)") << '\n';
  }
  out << "ok\n";
  return 0;
}

// The largest body whose event the store takes: the record holds the body's hook and payload
// as they came (not its token) and the receiver's few fields; a forward: sink keeps the original
// request (head and body) beside it. NATS servers take 1 MiB messages unless told otherwise.
std::uint64_t body_limit(const Config& config, const Store& store) {
  const std::uint64_t most = store.max_event_bytes();
  if (most == UINT64_MAX) return config.max_body;
  constexpr std::uint64_t kRecordRoom = 4 * 1024;
  constexpr std::uint64_t kHeadRoom = 32 * 1024;  // the parser's limit on a request head
  const bool originals = std::any_of(config.sinks.begin(), config.sinks.end(),
                                     [](const SinkConfig& s) { return sink_needs_original(s); });
  const std::uint64_t room = kRecordRoom + (originals ? kHeadRoom : 0);
  const std::uint64_t copies = originals ? 2 : 1;
  return std::min<std::uint64_t>(config.max_body, most > room ? (most - room) / copies : 0);
}

int serve(const Config& given, const Logger& log, int argc, const char* const* argv) {
  Config config = given;
  auto initial = make_live(config, log);
  if (!initial) {
    log.error("cannot start", LogFields().add("reason", initial.error().detail));
    std::cerr << "tdhook-receiver: " << initial.error().detail << '\n';
    return exit_config;
  }
  LiveSettings live(*initial);
  const bool verifying = (*initial)->verifier.has_value();
  if (const auto& tls = (*initial)->tls) {
    LogFields fields;
    add_tls_fields(fields, *tls);
    log.info("TLS certificate loaded", fields);
  }
  auto spool = open_store(config, log);
  if (!spool) {
    log.error("cannot open the store", LogFields().add("reason", spool.error().detail));
    std::cerr << "tdhook-receiver: cannot open the store: " << spool.error().detail << '\n';
    return exit_runtime;
  }
  if (config.deliver_only) return deliver_only(config, **spool, log);
  if (const auto limit = body_limit(config, **spool); limit < config.max_body) {
    const auto fields = LogFields()
                            .add("max_body", static_cast<std::int64_t>(config.max_body))
                            .add("store_takes", static_cast<std::int64_t>(limit))
                            .add("hint",
                                 "raise max_payload in the NATS servers' configuration "
                                 "(samples/nats: 8MB), or lower --max-body");
    if (limit < 64 * 1024) {
      log.error("the store's messages are too small for Tiledesk's notifications", fields);
      std::cerr << "tdhook-receiver: the store takes events of at most " << limit
                << " bytes of body\n";
      return exit_config;
    }
    log.warn("--max-body lowered to what the store takes: larger bodies are answered 413", fields);
    config.max_body = limit;
  }
  // `tdhook spool` reaches the embedded store through this while we hold it (a NATS store it
  // reaches on its own). Without it the receiver still takes and delivers events, so a failure
  // is logged, not fatal.
  Result<std::unique_ptr<AdminServer>> admin =
      Error{ErrorCode::invalid_input, "the store is not the embedded log"};
  if (config.store_url.empty())
    admin = AdminServer::start(**spool, admin_socket_path(config.data_dir), log);
  if (!admin && config.store_url.empty()) {
    log.error("no admin socket: tdhook spool cannot reach this receiver",
              LogFields().add("reason", admin.error().detail));
  }
  Metrics metrics;
  // --inspect: what the intake and the dispatcher report is kept for the inspector. Declared
  // before them, so that it outlives both.
  std::unique_ptr<inspect::Recorder> recorder;
  if (!config.inspect_host.empty())
    recorder = std::make_unique<inspect::Recorder>(config.inspect_keep);
  auto dispatcher = Dispatcher::start(**spool, config.sinks, log, metrics, recorder.get());
  if (!dispatcher) {
    log.error("cannot start the sinks", LogFields().add("reason", dispatcher.error().detail));
    return exit_config;
  }
  (*spool)->set_on_commit([d = dispatcher->get()] { d->wake(); });
  ReplyRunner replies(config.replies, config.reply_timeout, config.pass_env, log);
  auto server =
      HttpServer::start(ServerParts{config, live, **spool, replies, metrics, log, recorder.get()});
  if (!server) {
    log.error("cannot listen", LogFields().add("reason", server.error().detail));
    (*dispatcher)->stop();
    return exit_runtime;
  }
  const std::string addr =
      (config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host) + ":" +
      std::to_string((*server)->port());
  log.info("listening", LogFields()
                            .add("addr", addr)
                            .add("port", (*server)->port())
                            .add("path", config.path)
                            .add("tls", !config.tls_cert.empty())
                            .add("sinks", static_cast<std::int64_t>(config.sinks.size()))
                            .add("verify", verifying ? "on" : "off"));
  std::unique_ptr<inspect::Inspector> inspector;
  if (recorder) {
    auto started =
        start_inspector(config, *recorder, **spool, **dispatcher, (*server)->port(), log);
    if (!started) {
      log.error("cannot start the inspector", LogFields().add("reason", started.error().detail));
      std::cerr << "tdhook-receiver: " << started.error().detail << '\n';
      (*dispatcher)->stop();
      if (admin) (*admin)->stop();
      return exit_config;
    }
    inspector = std::move(*started);
  }

  std::thread signals([&] {
    wait_for_stop(**dispatcher, log, Reloader{argc, argv, live, metrics, log});
    (*server)->shutdown();
    // Its event streams end at once; its thread is joined while the server drains.
    if (inspector) inspector->stop();
  });
  const bool clean = (*server)->run();
  if (!clean) {
    log.error("the HTTP server stopped unexpectedly");
    pthread_kill(signals.native_handle(), SIGTERM);  // wakes the signal thread's sigwait
  }
  signals.join();
  (*dispatcher)->stop();
  if (admin) (*admin)->stop();
  log.info("stopped", LogFields().add("pending", (*spool)->pending_total()));
  return clean ? 0 : exit_runtime;
}

}  // namespace
}  // namespace tdhook::receiver

int main(int argc, char** argv) {
  using namespace tdhook::receiver;
  // Records are made on the HTTP threads and freed on the writer's and the sinks': with glibc's
  // default of 8 arenas per core, freed memory stayed spread over arenas and the resident size
  // crept up under load (a 10-minute soak at 26k events/s: 50 -> 69 MiB; with two arenas flat
  // at 55 MiB, throughput the same). MALLOC_ARENA_MAX in the environment still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  // Blocked before any thread starts, so that every thread inherits the mask and only the
  // signal thread's sigwait() takes them.
  const auto set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ignore_sigpipe();
  Config config;
  const auto outcome = load_config(argc, argv, config, std::cout, std::cerr);
  if (!outcome.run) return outcome.exit_code;
  if (config.check_config) return check_config(config, std::cout, std::cerr);
  Logger log(config.log_level);
  return serve(config, log, argc, argv);
}
