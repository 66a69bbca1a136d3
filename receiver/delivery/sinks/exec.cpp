#include <algorithm>
#include <string>
#include <string_view>

#include "delivery/process.hpp"
#include "delivery/sink.hpp"

namespace tdhook::receiver {
namespace {

// Script output longer than this is cut in the log line (the buffer itself is bounded by
// exec_output_limit; this keeps a single log line readable).
constexpr std::size_t logged_output_max = 16 * 1024;

class ExecSink final : public Sink {
 public:
  ExecSink(const SinkConfig& config, std::string command, const Logger& log)
      : name_(config.name),
        command_(std::move(command)),
        timeout_(config.exec_timeout),
        output_limit_(config.exec_output_limit),
        pass_env_(config.pass_env),
        log_(log) {}

  std::vector<DeliveryOutcome> deliver(const std::vector<Delivery>& batch) override {
    std::vector<DeliveryOutcome> outcomes;
    outcomes.reserve(batch.size());
    for (const auto& d : batch) outcomes.push_back(run(d));
    return outcomes;
  }

 private:
  DeliveryOutcome run(const Delivery& d) const {
    ProcessOptions options;
    options.command = command_;
    options.timeout = timeout_;
    options.output_limit = output_limit_;
    // Event data reaches the script only here, as escaped values: never in the command line.
    options.environment = build_environment(
        pass_env_,
        script_variables(ScriptEvent{d.event, d.delivery_id, d.project_id, d.subscription_id,
                                     d.timestamp_ms, d.attempts + 1}));
    // A final newline, as on the stdout sink, so that `read -r line` in a script sees the line.
    options.input = d.record + "\n";

    auto result = run_process(options);
    if (!result) return {false, result.error().detail};
    const std::string error = result->describe(timeout_);
    log_result(d, *result, error);
    // The tail: what a failing script says last is why it failed.
    const std::string_view output = result->output;
    return {result->ok(), error,
            std::string(output.substr(output.size() - std::min(output.size(), kOutputKept)))};
  }

  void log_result(const Delivery& d, const ProcessResult& r, const std::string& error) const {
    // Output is worth an info line even on success: it is what the operator reads to debug.
    const LogLevel level = !r.ok()              ? LogLevel::warn
                           : r.output_bytes > 0 ? LogLevel::info
                                                : LogLevel::debug;
    if (!log_.enabled(level)) return;
    LogFields fields;
    fields.add("sink", name_)
        .add("delivery_id", d.delivery_id)
        .add("attempt", d.attempts + 1)
        .add("pid", r.pid)
        .add("elapsed_ms", static_cast<std::int64_t>(r.elapsed.count()));
    if (!error.empty()) fields.add("error", error);
    if (r.output_bytes > 0) {
      const bool cut = r.output.size() > logged_output_max || r.output_bytes > r.output.size();
      fields.add("output", std::string_view(r.output).substr(0, logged_output_max))
          .add("output_bytes", static_cast<std::int64_t>(r.output_bytes))
          .add("output_truncated", cut);
    }
    log_.log(level, r.ok() ? "script finished" : "script failed", fields);
  }

  std::string name_;
  std::string command_;
  std::chrono::milliseconds timeout_;
  std::size_t output_limit_;
  std::vector<std::string> pass_env_;
  Logger log_;
};

}  // namespace

std::unique_ptr<Sink> make_exec_sink(const SinkConfig& config, std::string command,
                                     const Logger& log) {
  return std::make_unique<ExecSink>(config, std::move(command), log);
}

}  // namespace tdhook::receiver
