#pragma once
// Synchronous replies (`--reply EVENT=COMMAND`): for operator.select and any event the operator
// names, a command runs while Tiledesk waits, and its stdout, when it is a JSON object, becomes
// the response body (reference §4.3: echo the payload, change `operators`).
//
// The command runs as `/bin/sh -c COMMAND` in its own process group with the exec sinks' clean
// environment (PATH, HOME, LANG, TZ, --pass-env names, TDHOOK_* variables) and the event record
// on stdin. At the timeout the whole group is killed. Any failure gives the answer `{}`, so
// Tiledesk keeps its own routing decision; the reason goes to the log.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "config/config.hpp"

namespace tdhook::receiver {

struct ReplyContext {
  std::string_view event;
  std::string_view delivery_id;
  std::string_view project_id;
  std::string_view subscription_id;
  std::int64_t timestamp_ms = 0;
  std::string_view record;  // the event record, on stdin
};

struct ReplyResult {
  bool ok = false;
  std::string body;   // the JSON object to answer (ok), or "{}"
  std::string error;  // why not ok: "exit status 1", "timeout after 5000ms", "invalid JSON", ...
  std::chrono::milliseconds elapsed{0};
};

class ReplyRunner {
 public:
  ReplyRunner(std::vector<ReplyRule> rules, std::chrono::milliseconds timeout,
              std::vector<std::string> pass_env, const Logger& log);

  // The first rule whose pattern matches `event`, or nullptr.
  const ReplyRule* find(std::string_view event) const noexcept;

  // Runs the rule's command; never throws. Logs failures and the command's stderr.
  ReplyResult run(const ReplyRule& rule, const ReplyContext& context) const;

  bool empty() const noexcept { return rules_.empty(); }

 private:
  std::vector<ReplyRule> rules_;
  std::chrono::milliseconds timeout_;
  std::vector<std::string> pass_env_;
  const Logger& log_;
};

// Largest stdout accepted as a reply body; Tiledesk's answers are a few KB.
inline constexpr std::size_t reply_output_limit = 4 * 1024 * 1024;

}  // namespace tdhook::receiver
