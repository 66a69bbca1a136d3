#include "support/nats_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "support/receiver_process.hpp"

namespace tdhook::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLoopback = "127.0.0.1";
constexpr int kPortAttempts = 3;

// Ports that were free a moment ago; the sockets stay bound until all are picked, so the
// ports differ from one another.
std::vector<int> pick_free_ports(std::size_t count) {
  std::vector<int> fds, ports;
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      break;
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  for (const int fd : fds) ::close(fd);
  if (ports.size() != count) throw std::runtime_error("cannot pick a free port on 127.0.0.1");
  return ports;
}

// nats-server from $TDHOOK_NATS_SERVER, else $PATH, else Debian's /usr/sbin.
std::string nats_server_binary() {
  if (const char* explicit_path = std::getenv("TDHOOK_NATS_SERVER")) {
    if (::access(explicit_path, X_OK) != 0) {
      throw std::runtime_error(std::string("TDHOOK_NATS_SERVER=") + explicit_path +
                               ": not an executable file");
    }
    return explicit_path;
  }
  std::string dirs = std::getenv("PATH") ? std::getenv("PATH") : "";
  dirs += ":/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin";
  std::istringstream in(dirs);
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / "nats-server";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  throw std::runtime_error("nats-server not found (scripts/install-deps installs it)");
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string host_port(int port) { return std::string(kLoopback) + ":" + std::to_string(port); }

std::optional<nlohmann::json> get_json(const NatsServer& server, const std::string& path) {
  const auto body = server.monitor_get(path);
  if (!body) return std::nullopt;
  auto parsed = nlohmann::json::parse(*body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return parsed;
}

constexpr const char* kJszStreams = "/jsz?accounts=true&streams=true";

std::string string_at(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The stream's entry in a /jsz?accounts=true&streams=true answer: in
// account_details[].stream_detail[], the one whose "name" is `stream`.
const nlohmann::json* find_stream(const nlohmann::json& jsz, const std::string& stream) {
  const auto accounts = jsz.find("account_details");
  if (accounts == jsz.end() || !accounts->is_array()) return nullptr;
  for (const auto& account : *accounts) {
    const auto streams = account.find("stream_detail");
    if (streams == account.end() || !streams->is_array()) continue;
    for (const auto& s : *streams) {
      if (string_at(s, "name") == stream) return &s;
    }
  }
  return nullptr;
}

// True at most once per `interval`: a probe inside poll_until's (faster) loop. nats-server
// writes a warning line to its log for each failed /healthz, so it is asked less often.
class Every {
 public:
  explicit Every(std::chrono::milliseconds interval) : interval_(interval) {}
  bool due() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) return false;
    next_ = now + interval_;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point next_{};
};

}  // namespace

int pick_free_port() { return pick_free_ports(1).front(); }

// ---- NatsServer ----

NatsServer::NatsServer(NatsServerConfig config, bool start_now) : config_(std::move(config)) {
  const bool pick_client = config_.client_port == 0, pick_monitor = config_.monitor_port == 0;
  const bool pick_cluster = !config_.cluster_name.empty() && config_.cluster_port == 0;
  for (int attempt = 1;; ++attempt) {
    const auto ports = pick_free_ports(3);
    if (pick_client) config_.client_port = ports[0];
    if (pick_monitor) config_.monitor_port = ports[1];
    if (pick_cluster) config_.cluster_port = ports[2];
    write_config();
    if (!start_now) return;
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      std::vector<int> given;  // ports the caller chose: another pick does not help them
      if (!pick_client) given.push_back(config_.client_port);
      if (!pick_monitor) given.push_back(config_.monitor_port);
      if (!config_.cluster_name.empty() && !pick_cluster) given.push_back(config_.cluster_port);
      if (attempt >= kPortAttempts || !lost_port_race(given)) throw;
    }
  }
}

NatsServer::~NatsServer() { kill9(); }

std::string NatsServer::url() const { return "nats://" + host_port(config_.client_port); }

void NatsServer::write_config() const {
  fs::create_directories(store_dir());
  std::ostringstream conf;
  conf << "# Generated by tdhook's tests (tests/support/nats_server.cpp).\n"
       << "server_name: " << quoted(config_.name) << "\n"
       << "listen: " << quoted(host_port(config_.client_port)) << "\n"
       << "http: " << quoted(host_port(config_.monitor_port)) << "\n"
       << "jetstream {\n"
       << "  store_dir: " << quoted(store_dir().string()) << "\n"
       << "  max_memory_store: 268435456\n"
       << "  max_file_store: 1073741824\n"
       << "}\n";
  if (!config_.cluster_name.empty()) {
    conf << "cluster {\n"
         << "  name: " << quoted(config_.cluster_name) << "\n"
         << "  listen: " << quoted(host_port(config_.cluster_port)) << "\n"
         << "  routes: [\n";
    for (const int port : config_.route_ports) {
      conf << "    " << quoted("nats-route://" + host_port(port)) << "\n";
    }
    conf << "  ]\n"
         << "}\n";
  }
  write_file(dir_ / "nats-server.conf", conf.str());
}

bool NatsServer::launch() {
  if (running()) return true;
  const std::string binary = nats_server_binary();
  {
    std::ofstream log(log_path(), std::ios::binary | std::ios::app);
    log << "---- tdhook test harness: starting " << config_.name << " (launch " << ++launches_
        << ") ----\n";
  }
  std::error_code ec;
  launch_offset_ = fs::file_size(log_path(), ec);
  if (ec) launch_offset_ = 0;

  // Everything the child needs is prepared before fork(): after it only async-signal-safe calls.
  std::vector<std::string> args{binary, "-c", (dir_ / "nats-server.conf").string()};
  std::vector<std::string> env{
      std::string("PATH=") + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin"),
      std::string("HOME=") + dir_.path().string()};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return false;
  }
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    // The server goes when the thread that started it goes (a crashed test leaves none).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) ::_exit(127);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  if (child < 0) return false;
  pid_ = child;
  last_exit_.reset();
  return true;
}

bool NatsServer::wait_started(std::chrono::milliseconds timeout) {
  Every probe(std::chrono::milliseconds(20));
  const bool done = poll_until([&] { return !running() || (probe.due() && healthy()); }, timeout);
  return done && running();
}

void NatsServer::start(std::chrono::milliseconds timeout) {
  if (running()) return;
  if (!launch()) throw std::runtime_error("cannot spawn nats-server for " + config_.name);
  if (!wait_started(timeout)) {
    const bool exited = !running();
    kill9();
    throw std::runtime_error(
        "nats-server " + config_.name + " (client port " + std::to_string(config_.client_port) +
        ", monitor port " + std::to_string(config_.monitor_port) + ") " +
        (exited ? "exited with " + std::to_string(last_exit_.value_or(-1))
                : "did not answer /healthz?js-enabled-only=true with 200 within " +
                      std::to_string(timeout.count()) + " ms") +
        "; log tail:\n" + log_tail(4096));
  }
}

void NatsServer::restart(std::chrono::milliseconds timeout) {
  stop();
  start(timeout);
}

bool NatsServer::reap(bool block) const {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r == pid_) {
    last_exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_ = -1;  // reaped, or not our child any more (ECHILD)
  return true;
}

bool NatsServer::running() const { return !reap(false); }

void NatsServer::kill9() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  reap(true);
}

bool NatsServer::stop(std::chrono::milliseconds timeout) {
  if (!running()) return true;
  ::kill(pid_, SIGTERM);
  if (poll_until([&] { return reap(false); }, timeout)) return true;
  kill9();
  return false;
}

std::optional<std::string> NatsServer::monitor_get(const std::string& path_and_query) const {
  httplib::Client client(kLoopback, config_.monitor_port);
  client.set_connection_timeout(0, 250'000);
  client.set_read_timeout(2, 0);
  client.set_write_timeout(2, 0);
  auto res = client.Get(path_and_query);
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

bool NatsServer::healthy() const {
  return monitor_get("/healthz?js-enabled-only=true").has_value();
}

std::optional<std::uint64_t> NatsServer::stream_last_seq(const std::string& stream) const {
  const auto jsz = get_json(*this, kJszStreams);
  const auto* detail = jsz ? find_stream(*jsz, stream) : nullptr;
  if (detail == nullptr) return std::nullopt;
  const auto state = detail->find("state");
  if (state == detail->end() || !state->is_object()) return std::nullopt;
  const auto last = state->find("last_seq");
  if (last == state->end() || !last->is_number_unsigned()) return std::nullopt;
  return last->get<std::uint64_t>();
}

std::string NatsServer::log_tail(std::size_t bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return "(no log at " + log_path().string() + ")";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(in.tellg());
  const auto from = size > bytes ? size - bytes : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string text(size - from, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (from > 0) {  // starts on a line of its own
    const auto newline = text.find('\n');
    if (newline != std::string::npos && newline + 1 < text.size()) text.erase(0, newline + 1);
  }
  return text;
}

bool NatsServer::lost_port_race(const std::vector<int>& given_ports) const {
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return false;
  in.seekg(static_cast<std::streamoff>(launch_offset_));
  bool lost = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find("address already in use") == std::string::npos) continue;
    for (const int port : given_ports) {
      if (line.find(host_port(port) + ":") != std::string::npos) return false;
    }
    lost = true;
  }
  return lost;
}

// ---- NatsCluster ----

NatsCluster::NatsCluster(int size, const std::string& prefix) {
  if (size < 1) throw std::invalid_argument("a cluster needs at least one node");
  for (int attempt = 1;; ++attempt) {
    if (create_and_start(size, prefix, std::chrono::seconds(10))) return;
    if (attempt >= kPortAttempts) {
      throw std::runtime_error("nats cluster: ports kept being taken; logs:\n" + log_tails());
    }
  }
}

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_) n->kill9();
}

bool NatsCluster::create_and_start(int size, const std::string& prefix,
                                   std::chrono::milliseconds timeout) {
  nodes_.clear();  // kills the nodes of an attempt that lost a port race
  const auto n = static_cast<std::size_t>(size);
  const auto ports = pick_free_ports(3 * n);
  for (std::size_t i = 0; i < n; ++i) {
    NatsServerConfig config;
    config.name = prefix + std::to_string(i);
    config.cluster_name = kClusterName;
    config.client_port = ports[3 * i];
    config.monitor_port = ports[3 * i + 1];
    config.cluster_port = ports[3 * i + 2];
    for (std::size_t j = 0; j < n; ++j) {
      if (j != i) config.route_ports.push_back(ports[3 * j + 2]);
    }
    nodes_.push_back(std::make_unique<NatsServer>(std::move(config), false));
  }
  try {
    start_all(timeout);
    return true;
  } catch (const std::runtime_error&) {
    for (const auto& node : nodes_) {
      if (node->lost_port_race()) return false;
    }
    throw;
  }
}

std::string NatsCluster::urls() const {
  std::string out;
  for (const auto& n : nodes_) out += (out.empty() ? "" : ",") + n->url();
  return out;
}

std::optional<int> NatsCluster::index_of(const std::string& server_name) const {
  for (int i = 0; i < size(); ++i) {
    if (node(i).name() == server_name) return i;
  }
  return std::nullopt;
}

void NatsCluster::restart(int i, std::chrono::milliseconds timeout) { node(i).restart(timeout); }

void NatsCluster::stop_all() {
  for (auto& n : nodes_) n->stop();
}

void NatsCluster::start_all(std::chrono::milliseconds timeout) {
  // All at once: a clustered server may wait for its routes before it answers.
  std::vector<NatsServer*> launched;
  for (auto& n : nodes_) {
    if (n->running()) continue;
    if (!n->launch()) {
      for (auto* l : launched) l->kill9();
      throw std::runtime_error("cannot spawn nats-server for " + n->name());
    }
    launched.push_back(n.get());
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string failures;
  for (auto* n : launched) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!n->wait_started(std::max(left, std::chrono::milliseconds(1)))) {
      failures += "\n== " + n->name() + (n->running() ? " (no 200 from /healthz)" : " (exited)") +
                  ", log tail:\n" + n->log_tail(2048);
    }
  }
  if (!failures.empty()) {
    for (auto* n : launched) n->kill9();
    throw std::runtime_error("nats cluster: nodes did not start:" + failures);
  }
}

std::optional<int> NatsCluster::meta_leader() const {
  std::optional<int> agreed;
  bool any = false;
  for (int i = 0; i < size(); ++i) {
    if (!node(i).running()) continue;
    any = true;
    const auto jsz = get_json(node(i), "/jsz");
    if (!jsz) return std::nullopt;
    const auto meta = jsz->find("meta_cluster");
    if (meta == jsz->end() || !meta->is_object()) return std::nullopt;
    const auto leader = index_of(string_at(*meta, "leader"));
    if (!leader || !node(*leader).running() || (agreed && *agreed != *leader)) {
      return std::nullopt;
    }
    agreed = leader;
  }
  return any ? agreed : std::nullopt;
}

bool NatsCluster::wait_ready(std::chrono::milliseconds timeout) {
  Every probe(std::chrono::milliseconds(50));
  return poll_until(
      [&] {
        if (!probe.due()) return false;
        bool any = false;
        for (int i = 0; i < size(); ++i) {
          if (!node(i).running()) continue;
          any = true;
          if (!node(i).monitor_get("/healthz")) return false;
        }
        return any && meta_leader().has_value();
      },
      timeout);
}

std::optional<int> NatsCluster::stream_leader(const std::string& stream) const {
  for (int i = 0; i < size(); ++i) {
    if (!node(i).running()) continue;
    const auto jsz = get_json(node(i), kJszStreams);
    const auto* detail = jsz ? find_stream(*jsz, stream) : nullptr;
    if (detail == nullptr) continue;
    const auto cluster = detail->find("cluster");
    if (cluster != detail->end() && cluster->is_object() &&
        string_at(*cluster, "leader") == node(i).name()) {
      return i;
    }
  }
  return std::nullopt;
}

bool NatsCluster::wait_stream_synced(const std::string& stream,
                                     std::chrono::milliseconds timeout) const {
  Every probe(std::chrono::milliseconds(50));
  return poll_until(
      [&] {
        if (!probe.due()) return false;
        std::optional<std::uint64_t> first;
        for (int i = 0; i < size(); ++i) {
          if (!node(i).running()) continue;
          const auto seq = node(i).stream_last_seq(stream);
          if (!seq || (first && *first != *seq)) return false;
          first = seq;
        }
        return first.has_value();
      },
      timeout);
}

std::string NatsCluster::log_tails(std::size_t bytes_per_node) const {
  std::string out;
  for (const auto& n : nodes_) {
    out += "== " + n->name() + (n->running() ? " (running)" : " (not running)") + ":\n" +
           n->log_tail(bytes_per_node) + "\n";
  }
  return out;
}

}  // namespace tdhook::test
