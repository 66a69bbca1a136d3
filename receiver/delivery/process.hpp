#pragma once
// Runs one operator-configured shell command safely: `/bin/sh -c COMMAND` in its own process
// group, with an explicit environment, some input on stdin, a deadline after which the whole
// group is killed, and stdout+stderr captured into a bounded buffer (anything beyond the limit
// is read and discarded, so a chatty script can neither block nor grow our memory).
//
// The command always comes from the operator's configuration; event data only ever reaches the
// child through stdin and environment variables, never through a command line.
//
// Thread-safe: run_process() may run concurrently from several threads. It ignores SIGPIPE
// process-wide (once): a script that exits without reading its stdin must give us EPIPE, not
// kill the receiver. The child gets default signal dispositions and an empty signal mask.

#include <spawn.h>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::receiver {

struct ProcessOptions {
  std::string command;  // given to /bin/sh -c, or run directly when it is a plain path + words
  std::vector<std::string> environment;        // "NAME=value", the child's whole environment
  std::string input;                           // written to stdin, which is then closed
  std::chrono::milliseconds timeout{30000};    // from spawn to SIGTERM of the process group
  std::chrono::milliseconds kill_grace{2000};  // from SIGTERM to SIGKILL
  std::size_t output_limit = 64 * 1024;        // bytes of stdout+stderr kept
};

struct ProcessResult {
  int pid = 0;  // also the process group id
  bool timed_out = false;
  int exit_status = -1;            // when the shell exited normally
  int term_signal = 0;             // when it was killed by a signal
  std::string output;              // first output_limit bytes of stdout and stderr, interleaved
  std::uint64_t output_bytes = 0;  // everything the child printed
  std::chrono::milliseconds elapsed{0};

  bool ok() const noexcept { return !timed_out && exit_status == 0; }
  // "exit status 3", "killed by signal 9", "timeout after 2.5s"; empty when ok().
  std::string describe(std::chrono::milliseconds timeout) const;
};

// Makes a write to a closed pipe fail with EPIPE instead of killing the receiver, unless the
// program already chose a SIGPIPE disposition. Idempotent; run_process() calls it too.
void ignore_sigpipe();

// Spawns, feeds, waits and reaps. An error means the process could not be started at all
// (invalid_input, with errno text); every outcome of a started process is a ProcessResult.
Result<ProcessResult> run_process(const ProcessOptions& options);

// The child environment: PATH, HOME, LANG, TZ and each name in `pass_env` if set in ours (PATH
// gets a safe default when unset), then `extra` ("NAME=value", added last, overriding).
std::vector<std::string> build_environment(const std::vector<std::string>& pass_env,
                                           const std::vector<std::string>& extra);

// What a script is told about its event, as TDHOOK_* environment variables.
struct ScriptEvent {
  std::string_view event;
  std::string_view delivery_id;
  std::string_view project_id;
  std::string_view subscription_id;
  std::int64_t timestamp_ms = 0;
  int attempt = 1;
};

// TDHOOK_EVENT, TDHOOK_DELIVERY_ID, TDHOOK_PROJECT_ID, TDHOOK_SUBSCRIPTION_ID, TDHOOK_TIMESTAMP
// and TDHOOK_ATTEMPT, as "NAME=value" entries for build_environment's `extra`. The event name and
// the ids come from the request body, so each value goes through env_safe().
std::vector<std::string> script_variables(const ScriptEvent& event);

// `value` with every byte other than A-Z a-z 0-9 . _ - : percent-encoded ("%0A", "%24", "%25"
// for % itself): never cut at a NUL, never more than one line, and nothing in it that an
// unquoted expansion or a careless `eval` in a script would run. Tiledesk's event names and ids
// pass unchanged.
std::string env_safe(std::string_view value);

// An owned file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// A close-on-exec pipe whose ends are >= 3 (so that dup2 onto 0-2 in a child always works).
bool make_pipe(Fd& read_end, Fd& write_end);

// posix_spawn attributes that make the child the leader of its own process group, with default
// signal dispositions and an empty signal mask. False if the attributes cannot be initialised.
bool init_spawn_attr(posix_spawnattr_t& attr);

// "30s", "0.3s", "1.25s": a timeout as the errors of scripts and sinks name it.
std::string format_seconds(std::chrono::milliseconds ms);

}  // namespace tdhook::receiver
