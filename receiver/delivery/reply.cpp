#include "delivery/reply.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "delivery/process.hpp"

namespace tdhook::receiver {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::size_t stderr_limit = 4096;

pid_t spawn(const std::string& command, const std::vector<std::string>& env, int in, int out,
            int err, int& error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, err, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  init_spawn_attr(attr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::array<char*, 4> argv = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"),
                               const_cast<char*>(command.c_str()), nullptr};
  pid_t pid = 0;
  error = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return error == 0 ? pid : -1;
}

// Drives one child: feeds stdin, collects stdout/stderr, waits for exit or the deadline.
struct Session {
  std::string_view input;
  std::size_t written = 0;
  Fd in, out, err, pidfd;
  std::string stdout_text, stderr_text;
  bool stdout_overflow = false;
  bool exited = false;
  int wait_status = 0;

  void feed() {
    while (written < input.size()) {
      const auto n = ::write(in.get(), input.data() + written, input.size() - written);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      break;  // EPIPE: the command does not read its input, which is its right
    }
    in.reset();
  }

  static void drain(Fd& fd, std::string& into, std::size_t limit, bool* overflow) {
    char buf[16384];
    const auto n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      const auto room = limit > into.size() ? limit - into.size() : 0;
      into.append(buf, std::min(room, static_cast<std::size_t>(n)));
      if (overflow != nullptr && static_cast<std::size_t>(n) > room) *overflow = true;
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      fd.reset();
    }
  }

  // Returns false when the deadline passed before the child exited and closed its outputs.
  bool pump(SteadyClock::time_point deadline) {
    while (out.get() >= 0 || err.get() >= 0 || !exited) {
      const auto now = SteadyClock::now();
      if (now >= deadline) return false;
      std::array<pollfd, 4> fds{};
      fds[0] = {in.get(), POLLOUT, 0};
      fds[1] = {out.get(), POLLIN, 0};
      fds[2] = {err.get(), POLLIN, 0};
      fds[3] = {exited ? -1 : pidfd.get(), POLLIN, 0};
      const auto wait_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      if (::poll(fds.data(), fds.size(), static_cast<int>(wait_ms)) < 0 && errno != EINTR) {
        return false;
      }
      if (fds[0].revents != 0) feed();
      if (fds[1].revents != 0) drain(out, stdout_text, reply_output_limit, &stdout_overflow);
      if (fds[2].revents != 0) drain(err, stderr_text, stderr_limit, nullptr);
      if (fds[3].revents != 0) exited = true;
    }
    return true;
  }
};

bool is_json_object(const std::string& text) {
  if (!nlohmann::json::accept(text)) return false;
  const auto first = text.find_first_not_of(" \t\r\n");
  return first != std::string::npos && text[first] == '{';
}

}  // namespace

ReplyRunner::ReplyRunner(std::vector<ReplyRule> rules, std::chrono::milliseconds timeout,
                         std::vector<std::string> pass_env, const Logger& log)
    : rules_(std::move(rules)), timeout_(timeout), pass_env_(std::move(pass_env)), log_(log) {}

const ReplyRule* ReplyRunner::find(std::string_view event) const noexcept {
  for (const auto& rule : rules_) {
    if (rule.pattern.matches(event)) return &rule;
  }
  return nullptr;
}

ReplyResult ReplyRunner::run(const ReplyRule& rule, const ReplyContext& c) const {
  ignore_sigpipe();
  const auto started = SteadyClock::now();
  ReplyResult result;
  result.body = "{}";
  const auto env = build_environment(
      pass_env_, script_variables(ScriptEvent{c.event, c.delivery_id, c.project_id,
                                              c.subscription_id, c.timestamp_ms, 1}));
  Session s;
  s.input = c.record;
  Fd in_child, out_child, err_child;
  if (!make_pipe(in_child, s.in) || !make_pipe(s.out, out_child) || !make_pipe(s.err, err_child)) {
    result.error = std::string("cannot create pipes: ") + std::strerror(errno);
  } else {
    int spawn_error = 0;
    const pid_t pid =
        spawn(rule.command, env, in_child.get(), out_child.get(), err_child.get(), spawn_error);
    in_child.reset();
    out_child.reset();
    err_child.reset();
    if (pid < 0) {
      result.error = std::string("cannot start /bin/sh: ") + std::strerror(spawn_error);
    } else {
      s.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      s.exited = s.pidfd.get() < 0;  // without a pidfd, closed outputs mean the end
      fcntl(s.in.get(), F_SETFL, O_NONBLOCK);
      s.feed();
      const bool finished = s.pump(started + timeout_);
      ::kill(-pid, SIGKILL);  // the whole group: nothing of a reply outlives its request
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (!finished) {
        result.error = "timeout after " + std::to_string(timeout_.count()) + "ms";
      } else if (WIFSIGNALED(status)) {
        result.error = "killed by signal " + std::to_string(WTERMSIG(status));
      } else if (WEXITSTATUS(status) != 0) {
        result.error = "exit status " + std::to_string(WEXITSTATUS(status));
      } else if (s.stdout_overflow) {
        result.error = "output larger than " + std::to_string(reply_output_limit) + " bytes";
      } else if (!is_json_object(s.stdout_text)) {
        result.error = "output is not a JSON object";
      } else {
        result.ok = true;
        result.body = std::move(s.stdout_text);
      }
    }
  }
  result.elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
  if (!s.stderr_text.empty()) {
    log_.info(
        "reply stderr",
        LogFields().add("event", c.event).add("id", c.delivery_id).add("stderr", s.stderr_text));
  }
  if (!result.ok) {
    log_.warn("reply failed, answering {}",
              LogFields()
                  .add("event", c.event)
                  .add("id", c.delivery_id)
                  .add("reason", result.error)
                  .add("ms", static_cast<std::int64_t>(result.elapsed.count())));
  }
  return result;
}

}  // namespace tdhook::receiver
