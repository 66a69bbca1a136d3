#include "support/tool_run.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include "support/receiver_client.hpp"

extern char** environ;

namespace tdhook::test {

ToolRun run_tool(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), TDHOOK_TOOL_BIN);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto out = dir / "tool.out", err = dir / "tool.err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ToolRun run;
  int status = 0;
  if (rc != 0 || waitpid(pid, &status, 0) != pid) {
    run.err = "cannot run " + std::string(argv[0]);
    return run;
  }
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = read_if_exists(out);
  run.err = read_if_exists(err);
  return run;
}

ToolRun spool_tool(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "spool");
  return run_tool(dir, std::move(args));
}

}  // namespace tdhook::test
