// exec-stream:COMMAND — one long-lived consumer process instead of one process per event.
//
// Protocol: each delivery is one record line on the child's stdin; the child answers one line
// per delivery on its stdout, "ok <delivery id>" or "fail <delivery id> <reason>", in any order.
// A batch is pipelined (every line written, acknowledgements read as they come, both driven by
// one poll() loop so that neither side can block the other on a full pipe). The child's stderr
// goes to the receiver's log from a thread of its own, so that a chatty consumer never blocks
// on it, even between batches.
//
// A child that exits, closes its pipes or stays silent for exec_timeout while deliveries wait is
// ended (its whole process group), the deliveries it did not acknowledge fail (the dispatcher
// retries them), and a new child starts with the next batch, after a backoff when the last one
// acknowledged nothing (a consumer that dies at once must not spin).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "delivery/process.hpp"
#include "delivery/sink.hpp"

namespace tdhook::receiver {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t stream_batch_limit = kStreamBatch;
// An acknowledgement is a short line; a longer one is garbage (a consumer echoing records).
constexpr std::size_t ack_line_max = 8 * 1024;
constexpr std::size_t stderr_line_max = 4 * 1024;  // per log line; the rest of the line is dropped
constexpr std::size_t final_drain_max = 1024 * 1024;  // of stderr, once the child is ended
constexpr std::size_t reason_max = 1024;              // of a "fail" reason kept as the error
constexpr std::size_t logged_id_max = 128;
constexpr int ignored_lines_logged = 3;  // per batch; the rest are only counted
// Stop: after stdin is closed, how long the child has to exit on its own.
constexpr milliseconds stop_grace{2000};
// From SIGTERM of the group to SIGKILL.
constexpr milliseconds kill_grace{2000};
// After the child exited, acknowledgements still buffered in its stdout are read for this long.
constexpr milliseconds drain_grace{200};
constexpr milliseconds restart_backoff_first{100};
constexpr milliseconds restart_backoff_max{2000};

int poll_ms(Clock::time_point until, Clock::time_point now) {
  const auto wait = std::chrono::ceil<milliseconds>(until - now).count();
  return static_cast<int>(std::clamp<decltype(wait)>(wait, 0, 60000));
}

// A delivery id as a log field only when it looks like one: a broken consumer may echo record
// content where the id should be, and record content does not belong in the log.
bool loggable_id(std::string_view id) {
  return !id.empty() && id.size() <= logged_id_max && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':';
  });
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

// Splits off the first whitespace-delimited word of `s` (which is left with the rest).
std::string_view next_word(std::string_view& s) {
  s = trim(s);
  const auto end = std::min(s.find_first_of(" \t"), s.size());
  const auto word = s.substr(0, end);
  s = s.substr(end);
  return word;
}

// Reads the child's stderr into log lines, until EOF or until told to stop (then it reads what
// is already in the pipe, so the last words of a dying consumer are logged).
class StderrPump {
 public:
  StderrPump(Fd fd, std::string sink, int pid, const Logger& log)
      : fd_(std::move(fd)), sink_(std::move(sink)), pid_(pid), log_(log) {
    fcntl(fd_.get(), F_SETFL, O_NONBLOCK);
    if (!make_pipe(wake_read_, wake_write_)) {
      wake_read_.reset();
      wake_write_.reset();
    }
    thread_ = std::thread([this] { run(); });
  }
  StderrPump(const StderrPump&) = delete;
  StderrPump& operator=(const StderrPump&) = delete;
  ~StderrPump() {
    stop_ = true;
    if (wake_write_.valid()) {
      const char byte = 0;
      while (::write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
      }
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    for (;;) {
      std::array<pollfd, 2> fds{};
      fds[0] = {fd_.get(), POLLIN, 0};
      nfds_t count = 1;
      if (wake_read_.valid()) fds[count++] = {wake_read_.get(), POLLIN, 0};
      // Without a wake pipe, look at the stop flag every 100 ms.
      const int n = ::poll(fds.data(), count, wake_read_.valid() ? -1 : 100);
      if (n < 0 && errno != EINTR) break;
      if (stop_ || (count == 2 && fds[1].revents != 0)) {
        // The group is gone by now; only an escaped straggler could still write, so bound it.
        drain(final_drain_max);
        break;
      }
      if (n > 0 && fds[0].revents != 0 && !drain(std::numeric_limits<std::size_t>::max())) break;
    }
    flush_partial();
  }

  // Reads what is available (up to `limit` bytes); false at EOF or on an error.
  bool drain(std::size_t limit) {
    std::array<char, 16384> buf;
    for (std::size_t total = 0; total < limit;) {
      const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;
      total += static_cast<std::size_t>(n);
      for (ssize_t i = 0; i < n; ++i) take(buf[static_cast<std::size_t>(i)]);
    }
    return true;
  }

  void take(char c) {
    if (c == '\n') {
      emit();
      return;
    }
    if (line_.size() < stderr_line_max) {
      line_ += c;
    } else {
      cut_ = true;
    }
  }

  void flush_partial() {
    if (!line_.empty() || cut_) emit();
  }

  void emit() {
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    LogFields fields;
    fields.add("sink", sink_).add("pid", pid_).add("line", line_);
    if (cut_) fields.add("line_truncated", true);
    log_.info("stream process stderr", fields);
    line_.clear();
    cut_ = false;
  }

  Fd fd_, wake_read_, wake_write_;
  std::string sink_;
  int pid_;
  Logger log_;
  std::string line_;
  bool cut_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One running consumer: its pipes, its pid (= process group id) and how it ended.
struct Child {
  int pid = 0;
  Fd stdin_fd, stdout_fd, pid_fd;
  std::unique_ptr<StderrPump> stderr_pump;
  bool exited = false;   // seen exited (not reaped yet: the zombie keeps the group id ours)
  int wait_status = -1;  // set by end(), which reaps
  std::uint64_t acks = 0;
  std::string ack_buffer;
  bool discarding = false;  // inside an over-long stdout line

  bool check_exited() {
    if (exited) return true;
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid != 0) {
      exited = true;
      pid_fd.reset();
    }
    return exited;
  }

  // Waits up to `limit` for the child to exit (without reaping it).
  bool wait_exited(milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (!check_exited()) {
      const auto now = Clock::now();
      if (now >= until) return false;
      if (pid_fd.valid()) {
        pollfd p{pid_fd.get(), POLLIN, 0};
        ::poll(&p, 1, poll_ms(until, now));
      } else {
        ::poll(nullptr, 0, std::min(10, poll_ms(until, now)));
      }
    }
    return true;
  }

  // Ends the child: stdin closed, `grace` to exit on its own, then SIGTERM and SIGKILL of the
  // group. Stragglers of the group go too, then the child is reaped (no zombie). Idempotent.
  void end(milliseconds grace) {
    if (pid <= 0 || wait_status >= 0) return;
    stdin_fd.reset();
    if (!wait_exited(grace)) {
      kill(-pid, SIGTERM);
      if (!wait_exited(kill_grace)) kill(-pid, SIGKILL);
    }
    // The leader is a zombie until reaped, so the group id cannot have been reused yet.
    kill(-pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    wait_status = status;
    exited = true;
    pid_fd.reset();
    stdout_fd.reset();
    stderr_pump.reset();
  }

  std::string describe_exit() const {
    if (WIFSIGNALED(wait_status))
      return "stream process killed by signal " + std::to_string(WTERMSIG(wait_status));
    return "stream process exited with status " + std::to_string(WEXITSTATUS(wait_status));
  }
};

class ExecStreamSink final : public Sink {
 public:
  ExecStreamSink(const SinkConfig& config, std::string command, const Logger& log)
      : name_(config.name),
        command_(std::move(command)),
        timeout_(config.exec_timeout),
        pass_env_(config.pass_env),
        log_(log) {}

  ~ExecStreamSink() override {
    const std::lock_guard lock(mu_);
    if (child_) end_child(stop_grace, "stopping");
  }

  std::size_t batch_limit() const noexcept override { return stream_batch_limit; }

  std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) override {
    // With exec_concurrency > 1 the dispatcher calls from several workers: one stream, in turn.
    const std::lock_guard lock(mu_);
    if (batch.empty()) return {};
    if (child_ && child_->check_exited()) end_child(milliseconds(0), "exited while idle");
    if (!child_) {
      if (auto error = start_child(); !error.empty()) {
        return std::vector<DeliveryOutcome>(batch.size(), DeliveryOutcome{false, error});
      }
    }
    return exchange(batch);
  }

 private:
  // Empty on success, else why the child could not be started.
  std::string start_child() {
    const auto now = Clock::now();
    if (now < next_start_) std::this_thread::sleep_until(next_start_);
    ignore_sigpipe();
    Fd in_read, in_write, out_read, out_write, err_read, err_write;
    if (!make_pipe(in_read, in_write) || !make_pipe(out_read, out_write) ||
        !make_pipe(err_read, err_write)) {
      return std::string("cannot create pipes: ") + std::strerror(errno);
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
    // Not every fd of the receiver is close-on-exec (sockets of libraries): close them all.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawnattr_t attr;
    init_spawn_attr(attr);
    // The same environment as exec sinks, minus the per-event TDHOOK_* (records carry them).
    const auto environment = build_environment(pass_env_, {});
    std::vector<char*> envp;
    for (const auto& entry : environment) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    std::array<char*, 4> argv = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"),
                                 const_cast<char*>(command_.c_str()), nullptr};
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      next_start_ = Clock::now() + restart_backoff();
      return std::string("cannot start /bin/sh: ") + std::strerror(rc);
    }
    child_ = std::make_unique<Child>();
    child_->pid = pid;
    child_->stdin_fd = std::move(in_write);
    child_->stdout_fd = std::move(out_read);
    child_->pid_fd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    child_->stderr_pump = std::make_unique<StderrPump>(std::move(err_read), name_, pid, log_);
    fcntl(child_->stdin_fd.get(), F_SETFL, O_NONBLOCK);
    fcntl(child_->stdout_fd.get(), F_SETFL, O_NONBLOCK);
    log_.info("stream process started", LogFields().add("sink", name_).add("pid", pid));
    return {};
  }

  // Doubling while consumers die without acknowledging anything; none after one that worked.
  milliseconds restart_backoff() {
    ++failed_starts_;
    const int shift = std::min(failed_starts_ - 1, 16);
    return std::min(restart_backoff_max, restart_backoff_first * (1 << shift));
  }

  // Ends the child and logs it; returns how it ended ("stream process exited with status 3").
  std::string end_child(milliseconds grace, std::string_view why) {
    const int pid = child_->pid;
    const bool worked = child_->acks > 0;
    child_->end(grace);
    LogFields fields;
    fields.add("sink", name_)
        .add("pid", pid)
        .add("why", why)
        .add("status", child_->describe_exit());
    if (worked) {
      failed_starts_ = 0;
      next_start_ = Clock::time_point{};
    } else {
      const milliseconds pause = restart_backoff();
      next_start_ = Clock::now() + pause;
      fields.add("restart_in_ms", static_cast<std::int64_t>(pause.count()));
    }
    log_.log(why == "stopping" ? LogLevel::info : LogLevel::warn, "stream process ended", fields);
    std::string status = child_->describe_exit();
    child_.reset();
    return status;
  }

  // The pipelined exchange of one batch with the running child.
  std::vector<DeliveryOutcome> exchange(const std::vector<Delivery>& batch) {
    Child& c = *child_;
    std::vector<DeliveryOutcome> outcomes(batch.size());
    std::vector<bool> settled(batch.size(), false);
    std::size_t open = batch.size();
    std::unordered_map<std::string_view, std::size_t> index_of;
    std::string lines;
    std::vector<std::size_t> line_end;  // offset just past each delivery's line
    for (std::size_t i = 0; i < batch.size(); ++i) {
      index_of.emplace(batch[i].delivery_id, i);
      const auto start = lines.size();
      lines += batch[i].record;
      // One record per line is the framing; a raw newline can only be whitespace in valid JSON.
      std::replace_if(
          lines.begin() + static_cast<std::ptrdiff_t>(start), lines.end(),
          [](char ch) { return ch == '\n' || ch == '\r'; }, ' ');
      lines += '\n';
      line_end.push_back(lines.size());
    }
    std::size_t written = 0;
    int ignored = 0;
    const auto settle = [&](std::size_t i, bool ok, std::string error) {
      if (settled[i]) return;
      settled[i] = true;
      outcomes[i] = {ok, std::move(error)};
      --open;
    };
    const auto on_line = [&](std::string_view line, bool too_long) {
      std::string_view rest = too_long ? std::string_view() : line;
      const auto verb = next_word(rest);
      const auto id = next_word(rest);
      const bool is_ok = verb == "ok" && trim(rest).empty();
      const bool is_fail = verb == "fail";
      const auto found = index_of.find(id);
      const bool known =
          found != index_of.end() && !settled[found->second] && line_end[found->second] <= written;
      if ((is_ok || is_fail) && known) {
        ++c.acks;
        std::string reason(trim(rest).substr(0, reason_max));
        settle(found->second, is_ok, is_ok ? "" : reason.empty() ? "failed (no reason)" : reason);
        return;
      }
      if (++ignored > ignored_lines_logged) return;
      LogFields fields;
      fields.add("sink", name_).add("pid", c.pid);
      if (too_long) fields.add("line_truncated", true);
      fields.add("bytes", static_cast<std::int64_t>(line.size()));
      if ((is_ok || is_fail) && loggable_id(id)) fields.add("delivery_id", id);
      log_.warn((is_ok || is_fail) ? "stream: acknowledgement of no waiting delivery, ignored"
                                   : "stream: a line that is not an acknowledgement, ignored",
                fields);
    };
    const auto read_acks = [&]() -> bool {  // false at EOF or on an error
      std::array<char, 16384> buf;
      for (;;) {
        const ssize_t n = ::read(c.stdout_fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return true;
        if (n <= 0) return false;
        for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
          const char ch = buf[i];
          if (ch == '\n') {
            on_line(c.ack_buffer, c.discarding);
            c.ack_buffer.clear();
            c.discarding = false;
          } else if (c.ack_buffer.size() < ack_line_max) {
            c.ack_buffer += ch;
          } else {
            c.discarding = true;
          }
        }
      }
    };

    std::string failure;  // why the remaining deliveries fail; set when the exchange ends
    bool end_it = false;  // the child must go after this batch
    std::optional<Clock::time_point> drain_until;
    auto last_progress = Clock::now();
    while (open > 0) {
      const auto now = Clock::now();
      if (drain_until && now >= *drain_until) break;
      if (!drain_until && now >= last_progress + timeout_) {
        failure = "no acknowledgement within " + format_seconds(timeout_);
        log_.warn("stream process hung; ending its process group",
                  LogFields()
                      .add("sink", name_)
                      .add("pid", c.pid)
                      .add("waiting", static_cast<std::int64_t>(open)));
        end_it = true;
        break;
      }
      // Everything written and acknowledged up to the first unwritten line: stdin went away.
      if (!c.stdin_fd.valid() && !drain_until && written < lines.size()) {
        const bool written_all_settled = std::all_of(
            index_of.begin(), index_of.end(),
            [&](const auto& e) { return settled[e.second] || line_end[e.second] > written; });
        if (written_all_settled) {
          // Usually it is exiting: its exit status is the better reason, if it comes soon.
          if (!c.wait_exited(drain_grace)) failure = "stream process closed its stdin";
          end_it = true;
          break;
        }
      }
      std::array<pollfd, 3> fds{};
      nfds_t count = 0;
      int in_slot = -1, out_slot = -1;
      if (c.stdin_fd.valid() && written < lines.size()) {
        in_slot = static_cast<int>(count);
        fds[count++] = {c.stdin_fd.get(), POLLOUT, 0};
      }
      if (c.stdout_fd.valid()) {
        out_slot = static_cast<int>(count);
        fds[count++] = {c.stdout_fd.get(), POLLIN, 0};
      }
      // Its readiness only ends the poll early; waitid() below says for sure.
      if (c.pid_fd.valid()) fds[count++] = {c.pid_fd.get(), POLLIN, 0};
      int wait = poll_ms(drain_until ? *drain_until : last_progress + timeout_, now);
      if (!c.pid_fd.valid() && !c.exited) wait = std::min(wait, 10);  // no pidfd: look often
      const int n = ::poll(fds.data(), count, wait);
      if (n < 0 && errno != EINTR) {
        failure = std::string("poll: ") + std::strerror(errno);
        end_it = true;
        break;
      }
      if (in_slot >= 0 && fds[static_cast<std::size_t>(in_slot)].revents != 0) {
        while (written < lines.size()) {
          const ssize_t w =
              ::write(c.stdin_fd.get(), lines.data() + written, lines.size() - written);
          if (w < 0 && errno == EINTR) continue;
          if (w < 0 && errno == EAGAIN) break;
          if (w < 0) {  // EPIPE: it closed its stdin (exiting, most likely)
            c.stdin_fd.reset();
            break;
          }
          written += static_cast<std::size_t>(w);
          last_progress = Clock::now();
        }
      }
      if (out_slot >= 0 && fds[static_cast<std::size_t>(out_slot)].revents != 0) {
        const std::size_t open_before = open;
        const bool more = read_acks();
        if (open != open_before) last_progress = Clock::now();
        if (!more) {
          c.stdout_fd.reset();
          // Nothing more can be acknowledged: give the child a moment to exit, for its status.
          if (!c.exited) c.wait_exited(kill_grace);
          if (!c.exited) failure = "stream process closed its stdout";
          end_it = true;
          break;
        }
      }
      c.check_exited();
      if (c.exited && !drain_until) {
        // Acknowledgements may still sit in the pipe, or a straggler may hold it open.
        drain_until = Clock::now() + drain_grace;
        end_it = true;
      }
    }
    if (end_it) {
      // The child is ended either way; when it went on its own, its status says why.
      const bool went_on_its_own = c.exited;
      const std::string status = end_child(milliseconds(0), failure.empty() ? "exited" : failure);
      if (went_on_its_own || failure.empty()) failure = status;
      for (std::size_t i = 0; i < batch.size(); ++i) settle(i, false, failure);
    }
    if (ignored > ignored_lines_logged) {
      log_.warn("stream: lines ignored in this batch",
                LogFields().add("sink", name_).add("lines", ignored));
    }
    return outcomes;
  }

  std::string name_;
  std::string command_;
  milliseconds timeout_;
  std::vector<std::string> pass_env_;
  Logger log_;

  std::mutex mu_;
  std::unique_ptr<Child> child_;
  int failed_starts_ = 0;
  Clock::time_point next_start_{};
};

}  // namespace

std::unique_ptr<Sink> make_exec_stream_sink(const SinkConfig& config, std::string command,
                                            const Logger& log) {
  return std::make_unique<ExecStreamSink>(config, std::move(command), log);
}

}  // namespace tdhook::receiver
