// `tdhook sim`: a simulated Tiledesk subscription server, and `tdhook sim fire`, its client.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "commands.hpp"
#include "samples.hpp"
#include "sim_api.hpp"
#include "sim_fire.hpp"
#include "sim_store.hpp"
#include "tdhook/algorithm.hpp"
#include "tdhook/sign.hpp"

namespace tdhook::tools {

namespace {

namespace fs = std::filesystem;
using sim::Json;

constexpr const char* sim_footer = R"(
Projects: any valid ObjectId (24 hex digits) is accepted as an existing project unless --project
restricts them. Users: with no --user/--users-file any Basic credentials are accepted; a request
without them still gets 401. State: <data-dir>/sim.db (SQLite), kept across restarts.
Fire events with POST /_sim/<project_id>/fire {"event": E, "payload": {...}} or {"sample": NAME}
(add "async": true to answer before the deliveries end), or with `tdhook sim fire`.
Choices where Tiledesk gives no answer: a duplicate create (same project, event and target)
answers 200 with that existing subscription, its secret in the body and in x-hook-secret;
POST .../subscriptions/test answers 500 (Tiledesk's route is broken); history rows store
x-hook-secret and the token as "[redacted]" (with --compat, as Tiledesk stores them).

--compat reproduces Tiledesk's documented sender quirks:
  1. one default secret per process: every subscription created gets the same secret (§5.9);
  2. retries carry the hook and token of the LAST subscription of the batch, the x-hook-secret
     header staying right (§3.5);
  3. a duplicate create answers the FIRST subscription of the project and event
     (findOne({id_project, event}), whatever its target), with its secret, without `global`
     (§5.2);
  4. a subscription that cannot be signed skips the rest of its batch (§2.2, §2.3);
  5. history rows keep x-hook-secret and the token, as Tiledesk's log does (§5.7).)";

struct SimConfig {
  std::string listen = "127.0.0.1:3000";
  std::string data_dir = "./var/tdhook-sim";
  bool memory = false;
  std::vector<std::string> users;
  std::string users_file;
  std::vector<std::string> projects;
  bool compat = false;
  double retry_scale = 1.0;
  double timeout_s = 0;
  std::string global_key;
  std::string global_secret_file;
  std::string samples_dir;
  std::string origin = "http://localhost:3000";
};

struct FireConfig {
  std::string to = "http://127.0.0.1:3000";
  std::string project, event, sample, payload_file, user;
  bool async = false;
};

[[noreturn]] void fail(int code, const std::string& message) {
  std::cerr << "tdhook sim: " << message << "\n";
  throw CLI::RuntimeError(code);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(2, "cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// --samples-dir, else where `tdhook sign` and `tdhook events` find them (samples.hpp); empty
// when there is none: the simulator still serves, only {"sample": NAME} fails.
std::string sim_samples_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  const auto found = samples_dir();
  return found ? found->string() : std::string();
}

std::pair<std::string, int> parse_listen(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) fail(2, "--listen must be HOST:PORT");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (host.empty() || port < 0 || port > 65535) fail(2, "--listen must be HOST:PORT");
  return {host, port};
}

SigningKey global_signing_key(const SimConfig& c) {
  if (!c.global_key.empty() && !c.global_secret_file.empty()) {
    fail(2, "give --global-key or --global-secret-file, not both");
  }
  SigningKey key{Algorithm::hs256, "nodeauthsecret"};  // Tiledesk's default (§2.2)
  if (!c.global_secret_file.empty()) {
    std::string secret = read_file(c.global_secret_file);
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.empty()) fail(2, c.global_secret_file + " is empty");
    key.material = std::move(secret);
  } else if (!c.global_key.empty()) {
    const auto colon = c.global_key.find(':');
    const auto alg =
        algorithm_from_string(colon == std::string::npos ? "" : c.global_key.substr(0, colon));
    if (!alg) fail(2, "--global-key must be ALG:PEMFILE, ALG one of HS256 RS256 ES256 ...");
    key = {*alg, read_file(c.global_key.substr(colon + 1))};
  }
  auto probe = sign_token(R"({"_id":"000000000000000000000000"})", 0, key, true);
  if (!probe) fail(2, "the global key cannot sign: " + probe.error().detail);
  return key;
}

sim::ApiOptions api_options(const SimConfig& c, const std::string& samples_dir) {
  sim::ApiOptions o;
  for (const auto& u : c.users) {
    auto user = sim::parse_user(u);
    if (!user) fail(2, "--user: " + user.error().detail);
    o.users.push_back(std::move(*user));
  }
  if (!c.users_file.empty()) {
    auto users = sim::read_users_file(c.users_file);
    if (!users) fail(2, users.error().detail);
    o.users.insert(o.users.end(), users->begin(), users->end());
  }
  for (const auto& p : c.projects) {
    if (!sim::is_object_id(p)) fail(2, "--project " + p + " is not an ObjectId (24 hex digits)");
    std::string lowered = p;
    for (auto& ch : lowered) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    o.projects.push_back(lowered);
  }
  o.compat = c.compat;
  o.samples_dir = samples_dir;
  return o;
}

std::unique_ptr<sim::Store> open_store(const SimConfig& c) {
  std::string path = ":memory:";
  if (!c.memory) {
    std::error_code ec;
    fs::create_directories(c.data_dir, ec);
    if (ec) fail(2, "cannot create " + c.data_dir + ": " + ec.message());
    path = (fs::path(c.data_dir) / "sim.db").string();
  }
  auto store = sim::Store::open(path);
  if (!store) fail(2, store.error().detail);
  return std::move(*store);
}

void serve(const SimConfig& c) {
  const auto [host, port] = parse_listen(c.listen);
  if (c.retry_scale < 0) fail(2, "--retry-scale must not be negative");
  const std::string samples_dir = sim_samples_dir(c.samples_dir);
  sim::FireOptions fire_options;
  fire_options.compat = c.compat;
  fire_options.retry_scale = c.retry_scale;
  if (c.timeout_s > 0) {
    fire_options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(c.timeout_s * 1000));
  }
  fire_options.global_key = global_signing_key(c);
  fire_options.origin = c.origin;
  auto api = api_options(c, samples_dir);
  static const sim::Log log;
  if (samples_dir.empty()) {
    log.warn("no sample directory found: set TDHOOK_SAMPLES_DIR or --samples-dir to fire samples");
  }
  // Deliveries may hang forever (Tiledesk has no timeout): the store and the firer outlive
  // serve() on purpose, so that exiting never waits for them. Held by statics, they stay
  // reachable (LeakSanitizer does not count them as leaks). serve() runs once per process.
  static auto* store = open_store(c).release();
  static auto* firer = new sim::Firer(*store, fire_options, log);
  sim::SimServer server(*store, *firer, api, log);
  auto bound = server.bind(host, port);
  if (!bound) fail(2, bound.error().detail);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: they inherit it
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server.stop();
  });
  log.info("listening", {{"addr", host + ":" + std::to_string(*bound)},
                         {"compat", c.compat},
                         {"users", api.users.size()},
                         {"store", c.memory ? std::string(":memory:") : c.data_dir},
                         {"samples_dir", samples_dir}});
  server.run();
  kill(getpid(), SIGTERM);  // wakes the waiter if the server stopped on its own
  waiter.join();
  log.info("stopped");
}

std::string fire_payload(const FireConfig& f) {
  Json doc = Json::parse(read_file(f.payload_file), nullptr, false);
  if (doc.is_discarded()) fail(2, f.payload_file + " is not valid JSON");
  // A whole sample notification is accepted too: its payload is what gets fired.
  if (doc.is_object() && doc.contains("payload") && doc.contains("hook")) doc = doc["payload"];
  return sim::dump(doc);
}

void fire(const FireConfig& f) {
  if (!f.sample.empty() && !f.payload_file.empty()) fail(2, "give --sample or --payload, not both");
  if (f.sample.empty() && f.payload_file.empty()) fail(2, "give --sample NAME or --payload FILE");
  if (f.event.empty() && f.sample.empty()) fail(2, "--event is required with --payload");
  Json body = Json::object();
  if (!f.event.empty()) body["event"] = f.event;
  if (!f.sample.empty()) body["sample"] = f.sample;
  if (!f.payload_file.empty()) body["payload"] = Json::parse(fire_payload(f));
  if (f.async) body["async"] = true;
  httplib::Client client(f.to);
  if (!client.is_valid()) fail(2, "--to must be http://HOST:PORT");
  client.set_read_timeout(std::chrono::hours(1));
  std::string user = f.user;
  if (const char* env = std::getenv("TDHOOK_SIM_USER"); user.empty() && env) user = env;
  if (user.empty()) user = "sim:sim";
  const auto colon = user.find(':');
  if (colon == std::string::npos) fail(2, "--user must be NAME:PASSWORD");
  client.set_basic_auth(user.substr(0, colon).c_str(), user.substr(colon + 1).c_str());
  auto res =
      client.Post(("/_sim/" + f.project + "/fire").c_str(), sim::dump(body), "application/json");
  if (!res)
    fail(1, "cannot reach the simulator at " + f.to + ": " + httplib::to_string(res.error()));
  Json answer = Json::parse(res->body, nullptr, false);
  std::cout << (answer.is_discarded() ? res->body : sim::dump(answer, 2)) << "\n";
  if (res->status != 200) fail(1, "the simulator answered HTTP " + std::to_string(res->status));
}

}  // namespace

void setup_sim(CLI::App& app) {
  auto config = std::make_shared<SimConfig>();
  auto* sim = app.add_subcommand("sim", "a simulated Tiledesk subscription server");
  sim->footer(sim_footer);
  sim->add_option("--listen", config->listen, "HOST:PORT to serve on (port 0: any free port)")
      ->capture_default_str();
  sim->add_option("--data-dir", config->data_dir, "where the SQLite state lives")
      ->capture_default_str();
  sim->add_flag("--memory", config->memory, "keep the state in memory only (a throwaway run)");
  sim->add_option("--user", config->users, "a Basic-auth user NAME:PASSWORD (repeatable)");
  sim->add_option("--users-file", config->users_file, "a file of NAME:PASSWORD lines");
  sim->add_option("--project", config->projects, "accept only this project id (repeatable)");
  sim->add_flag("--compat", config->compat, "reproduce Tiledesk's sender quirks (listed below)");
  sim->add_option("--retry-scale", config->retry_scale, "multiply retry delays (tests: 0.01)")
      ->capture_default_str();
  sim->add_option("--timeout", config->timeout_s,
                  "seconds a delivery attempt may take (default: none, as Tiledesk)");
  sim->add_option("--global-key", config->global_key,
                  "ALG:PEMFILE, the private key for global subscriptions' tokens");
  sim->add_option("--global-secret-file", config->global_secret_file,
                  "the HS256 secret for global subscriptions (default: nodeauthsecret)");
  sim->add_option("--samples-dir", config->samples_dir, "where sample events are (NAME.json)");
  sim->add_option("--origin", config->origin, "the Origin header (Tiledesk's WEBHOOK_ORIGIN)")
      ->capture_default_str();

  auto fire_config = std::make_shared<FireConfig>();
  auto* fire_cmd = sim->add_subcommand("fire", "fire an event on a running simulator");
  fire_cmd->footer(
      "The simulator answers with one entry per delivery (attempts, statuses, timing).");
  fire_cmd->add_option("--to", fire_config->to, "the simulator's URL")->capture_default_str();
  fire_cmd->add_option("--project", fire_config->project, "the project id")->required();
  fire_cmd->add_option("--event", fire_config->event, "the event name (default: the sample's)");
  fire_cmd->add_option("--sample", fire_config->sample, "a sample event name, e.g. lead.create");
  fire_cmd->add_option("--payload", fire_config->payload_file, "a file with the payload JSON");
  fire_cmd->add_option("--user", fire_config->user,
                       "NAME:PASSWORD for the simulator (or $TDHOOK_SIM_USER)");
  fire_cmd->add_flag("--async", fire_config->async, "do not wait for the deliveries");
  fire_cmd->callback([fire_config] { fire(*fire_config); });

  sim->callback([sim, fire_cmd, config] {
    if (fire_cmd->parsed()) return;
    (void)sim;
    serve(*config);
  });
}

}  // namespace tdhook::tools
