#pragma once
// Runs the real tdhook-receiver binary for end-to-end tests: argv as given (plus nothing
// hidden), a small explicit environment, stdout and stderr captured by reader threads. The
// port is learnt from the receiver's "listening" log line, so tests pass --listen 127.0.0.1:0.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tdhook::test {

class ReceiverProcess {
 public:
  // `env` entries are "NAME=value", added to PATH and HOME.
  explicit ReceiverProcess(std::vector<std::string> args, std::vector<std::string> env = {});
  ~ReceiverProcess();  // SIGKILL if still running
  ReceiverProcess(const ReceiverProcess&) = delete;
  ReceiverProcess& operator=(const ReceiverProcess&) = delete;

  // Waits for the "listening" line; false on timeout or exit.
  bool wait_listening(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int port() const { return port_; }
  // Waits for the inspector's "inspector listening" line (--inspect HOST:0); false on timeout
  // or exit.
  bool wait_inspector(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int inspector_port() const { return inspector_port_; }
  pid_t pid() const { return pid_; }

  std::string stdout_text() const;
  std::string stderr_text() const;
  // Waits until `predicate(stdout_text)` holds.
  bool wait_stdout(const std::function<bool(const std::string&)>& predicate,
                   std::chrono::milliseconds timeout);
  std::size_t stdout_lines() const;

  void signal(int sig) const;
  // The exit code, or 128+signal when killed; nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(15));

 private:
  void read_loop(int fd, std::string& into);

  pid_t pid_ = -1;
  int port_ = 0;
  int inspector_port_ = 0;
  std::optional<int> exit_code_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string out_, err_;
  bool out_closed_ = false, err_closed_ = false;
  std::thread out_reader_, err_reader_;
};

// Polls `condition` until it holds or `timeout` passes (no fixed sleeps in tests).
bool poll_until(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace tdhook::test
