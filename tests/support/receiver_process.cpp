#include "support/receiver_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace tdhook::test {
namespace {

std::vector<char*> c_strings(std::vector<std::string>& items) {
  std::vector<char*> out;
  for (auto& s : items) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n' ? 1 : 0;
  return n;
}

}  // namespace

ReceiverProcess::ReceiverProcess(std::vector<std::string> args, std::vector<std::string> env) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  std::vector<std::string> argv{TDHOOK_RECEIVER_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> envp{
      std::string("PATH=") + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin"),
      std::string("HOME=") + (std::getenv("HOME") ? std::getenv("HOME") : "/")};
  // Sanitizer builds: the receiver reports (and halts) as the test binary was told to.
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"}) {
    if (const char* value = std::getenv(name)) envp.push_back(std::string(name) + "=" + value);
  }
  envp.insert(envp.end(), env.begin(), env.end());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  auto argv_c = c_strings(argv);
  auto envp_c = c_strings(envp);
  const int rc = posix_spawn(&pid_, argv[0].c_str(), &actions, &attr, argv_c.data(), envp_c.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    throw std::runtime_error("cannot start " + argv[0]);
  }
  out_reader_ = std::thread([this, fd = out_pipe[0]] { read_loop(fd, out_); });
  err_reader_ = std::thread([this, fd = err_pipe[0]] { read_loop(fd, err_); });
}

ReceiverProcess::~ReceiverProcess() {
  if (!exit_code_) {
    ::kill(pid_, SIGKILL);
    (void)wait_exit(std::chrono::seconds(30));
  }
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
}

void ReceiverProcess::read_loop(int fd, std::string& into) {
  char buf[65536];
  while (true) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard lock(mu_);
    if (n <= 0) {
      (&into == &out_ ? out_closed_ : err_closed_) = true;
      changed_.notify_all();
      break;
    }
    into.append(buf, static_cast<std::size_t>(n));
    changed_.notify_all();
  }
  ::close(fd);
}

bool ReceiverProcess::wait_listening(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const bool seen = changed_.wait_for(lock, timeout, [&] {
    return err_.find("\"msg\":\"listening\"") != std::string::npos || err_closed_;
  });
  const auto at = err_.find("\"msg\":\"listening\"");
  if (!seen || at == std::string::npos) return false;
  const auto key = err_.find("\"port\":", at);
  if (key == std::string::npos) return false;
  port_ = std::atoi(err_.c_str() + key + 7);
  return port_ > 0;
}

bool ReceiverProcess::wait_inspector(std::chrono::milliseconds timeout) {
  constexpr std::string_view line = "\"msg\":\"inspector listening\"";
  std::unique_lock lock(mu_);
  const bool seen = changed_.wait_for(
      lock, timeout, [&] { return err_.find(line) != std::string::npos || err_closed_; });
  const auto at = err_.find(line);
  if (!seen || at == std::string::npos) return false;
  const auto key = err_.find("\"port\":", at);
  if (key == std::string::npos) return false;
  inspector_port_ = std::atoi(err_.c_str() + key + 7);
  return inspector_port_ > 0;
}

std::string ReceiverProcess::stdout_text() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string ReceiverProcess::stderr_text() const {
  std::lock_guard lock(mu_);
  return err_;
}

std::size_t ReceiverProcess::stdout_lines() const { return count_lines(stdout_text()); }

bool ReceiverProcess::wait_stdout(const std::function<bool(const std::string&)>& predicate,
                                  std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return predicate(out_); });
}

void ReceiverProcess::signal(int sig) const {
  if (!exit_code_) ::kill(pid_, sig);
}

std::optional<int> ReceiverProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  int status = 0;
  const bool done = poll_until(
      [&] {
        const auto r = ::waitpid(pid_, &status, WNOHANG);
        return r == pid_ || (r < 0 && errno != EINTR);
      },
      timeout);
  if (!done) return std::nullopt;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  // Everything it wrote is read once both pipes are closed: then stderr_text() is complete.
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, std::chrono::seconds(5), [&] { return out_closed_ && err_closed_; });
  return exit_code_;
}

bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    // Polling interval of a condition with a deadline, not a wait for something to happen.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tdhook::test
