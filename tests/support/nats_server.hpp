#pragma once
// Runs real nats-server processes (JetStream on) on 127.0.0.1 for end-to-end tests: one node,
// or a cluster of nodes with routes among them. Each node has a generated config file, its
// store directory and its log (the server's stdout and stderr) in a TempDir that lives as long
// as the node's object, so a restart finds its data again. Ports are free ones picked by
// binding port 0; a start that loses the race ("address already in use") is retried with new
// ports, at construction only (a restart keeps its ports).
//
// A server is started by fork/exec and dies with the thread that started it
// (PR_SET_PDEATHSIG): start and restart nodes from the test's own thread, and a crashed test
// binary leaves no nats-server behind.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/files.hpp"

namespace tdhook::test {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int pick_free_port();

struct NatsServerConfig {
  std::string name = "tdhook-nats";  // server_name (JetStream needs one in a cluster)
  // Cluster membership: an empty cluster_name means a standalone server.
  std::string cluster_name;
  int cluster_port = 0;          // 0: picked by the server's constructor
  std::vector<int> route_ports;  // the other nodes' cluster ports
  int client_port = 0;           // 0: picked
  int monitor_port = 0;          // 0: picked
};

class NatsServer {
 public:
  // Writes the config and, with `start_now`, starts the server and waits until it is ready
  // (start()); throws std::runtime_error (with the log's tail) when it cannot.
  explicit NatsServer(NatsServerConfig config = {}, bool start_now = true);
  ~NatsServer();  // SIGKILL if still running
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  const std::string& name() const { return config_.name; }
  std::string url() const;  // "nats://127.0.0.1:PORT"
  int port() const { return config_.client_port; }
  int monitor_port() const { return config_.monitor_port; }
  int cluster_port() const { return config_.cluster_port; }
  const NatsServerConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_.path(); }  // config, store/, log
  std::filesystem::path store_dir() const { return dir_ / "store"; }
  std::filesystem::path log_path() const { return dir_ / "nats-server.log"; }

  // launch() then wait_started(); throws std::runtime_error with the log's tail on failure.
  // Does nothing when the server is running.
  void start(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Spawns the process and returns at once (false when it cannot be spawned).
  bool launch();
  // Waits until GET /healthz?js-enabled-only=true on the monitor port answers 200; false on
  // timeout or when the process exits.
  bool wait_started(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void restart(std::chrono::milliseconds timeout = std::chrono::seconds(10));  // stop(), start()
  void kill9();                                                                // SIGKILL, reaped
  // SIGTERM, reaped; SIGKILL after `timeout`. False when SIGKILL was needed.
  bool stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool running() const;
  pid_t pid() const { return running() ? pid_ : -1; }
  // How the last run ended: exit code, or 128+signal; nullopt while running or never run.
  std::optional<int> last_exit() const { return last_exit_; }

  // GET on the monitor port: the body of a 200 answer, nullopt otherwise (short timeouts).
  std::optional<std::string> monitor_get(const std::string& path_and_query) const;
  // /healthz?js-enabled-only=true answers 200.
  bool healthy() const;
  // The last sequence of this node's copy of `stream` (in any account; /jsz state.last_seq),
  // nullopt when the node has no such stream or does not answer.
  std::optional<std::uint64_t> stream_last_seq(const std::string& stream) const;
  // The last `bytes` of the log, from the first line that starts in them (the harness writes a
  // line at each start).
  std::string log_tail(std::size_t bytes = 4096) const;

 private:
  friend class NatsCluster;
  void write_config() const;
  bool reap(bool block) const;
  // The last launch lost a port to another process, none of `given_ports`.
  bool lost_port_race(const std::vector<int>& given_ports = {}) const;

  NatsServerConfig config_;
  TempDir dir_;
  mutable pid_t pid_ = -1;
  mutable std::optional<int> last_exit_;
  int launches_ = 0;
  std::uintmax_t launch_offset_ = 0;  // the log's size when the last launch began
};

class NatsCluster {
 public:
  static constexpr const char* kClusterName = "tdhook-test";

  // `size` nodes named "<prefix>0", "<prefix>1", ... ("tdhook-n0"), each with routes to all the
  // others; starts them all and waits until each answers /healthz (not wait_ready()). Throws
  // std::runtime_error with the logs' tails when a node cannot start.
  explicit NatsCluster(int size = 3, const std::string& prefix = "tdhook-n");
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  NatsServer& node(int i) { return *nodes_.at(static_cast<std::size_t>(i)); }
  const NatsServer& node(int i) const { return *nodes_.at(static_cast<std::size_t>(i)); }
  // "nats://127.0.0.1:P1,nats://127.0.0.1:P2,..." in node order.
  std::string urls() const;
  // The index of the node with this server name.
  std::optional<int> index_of(const std::string& server_name) const;

  void kill9(int i) { node(i).kill9(); }
  void restart(int i, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void stop_all();
  // Starts every node that is not running, together; throws like the constructor.
  void start_all(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Every running node answers /healthz (the full check: in a cluster it also wants the node
  // current with the JetStream meta leader and its stream replicas current, as the server judges
  // it; see wait_stream_synced), and all of them name in /jsz the same meta leader, a running
  // node. False on timeout. Elections take seconds in nats-server 2.9: a new stream leader 4-8 s
  // after SIGKILL of the old one, and a cold start of every node from its stores has taken from
  // 5 to 16 s.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // The meta leader as running nodes see it, when they all agree and it is running.
  std::optional<int> meta_leader() const;
  // The node that leads `stream` (in any account): a running node whose /jsz shows itself as the
  // stream's cluster leader. nullopt during an election or when no such stream exists.
  std::optional<int> stream_leader(const std::string& stream) const;

  // Every running node has `stream` with the same last sequence. A restarted node can answer
  // /healthz with 200 a second before its replica has caught up: wait for this as well.
  bool wait_stream_synced(const std::string& stream,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // The logs' tails of every node, for a failing test's message.
  std::string log_tails(std::size_t bytes_per_node = 2048) const;

 private:
  // Creates the nodes with fresh ports and starts them; false when one lost a port race.
  bool create_and_start(int size, const std::string& prefix, std::chrono::milliseconds timeout);

  std::vector<std::unique_ptr<NatsServer>> nodes_;
};

}  // namespace tdhook::test
