#pragma once
// Running the real `tdhook` command line from a test: its output captured in files of the
// test's folder.
#include <string>
#include <vector>

#include "support/files.hpp"

namespace tdhook::test {

struct ToolRun {
  int code = -1;  // the exit status, 128 + the signal, or -1 when it could not run (err says why)
  std::string out, err;
};

// `tdhook ARGS...` with stdin from /dev/null, stdout and stderr in files of `dir`.
ToolRun run_tool(const TempDir& dir, std::vector<std::string> args);
// `tdhook spool ARGS...`
ToolRun spool_tool(const TempDir& dir, std::vector<std::string> args);

}  // namespace tdhook::test
