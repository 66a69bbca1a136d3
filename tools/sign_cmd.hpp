#pragma once
// `tdhook sign` and what `tdhook send` shares with it: the options that say which notification
// to build, and a factory that builds it exactly as Tiledesk would (with an optional defect, for
// testing receivers).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tdhook/result.hpp"
#include "tdhook/sign.hpp"

namespace tdhook::tools {

enum class Tamper {
  none,
  wrong_secret,   // x-hook-secret is another secret (the token is still right)
  no_secret,      // no x-hook-secret header
  bad_signature,  // the token's signature is altered
  alg_none,       // the token is re-issued with {"alg":"none"} and no signature
  stale,          // timestamp and iat one hour in the past
  future,         // timestamp and iat one hour in the future
  hook_mismatch,  // a valid token for another subscription id than the body's hook
  duplicate_key,  // the hook carries a duplicated "event" key
};
std::optional<Tamper> tamper_from_string(std::string_view name);

struct SignOptions {
  std::string event;
  std::string payload_file;
  std::string sample;
  std::vector<std::string> secret_files;
  std::string subscription_id;
  std::string project_id;
  std::string target;
  std::string global_key;          // ALG:PRIVATE_PEM_FILE
  std::string global_secret_file;  // HS256 key of global subscriptions
  std::string origin = "http://localhost:3000";
  std::optional<std::int64_t> timestamp_ms;
  std::string tamper = "none";
  std::string curl_url;  // sign only
};

// Registers every option of SignOptions except --curl.
void add_notification_options(CLI::App& cmd, SignOptions& options);

// One notification as it goes on the wire.
struct Notification {
  std::string body;
  std::string secret;  // x-hook-secret value; empty = no header
};

// Resolves the options once (reads files, picks the sample, builds the hook) so that many
// notifications can be made cheaply. make() is const and thread-safe.
class NotificationFactory {
 public:
  // `default_target`, when not empty, is the hook's target unless --target says otherwise (the
  // URL `send` posts to, as in Tiledesk where hook.target is that URL). invalid_input or
  // invalid_config with a clear detail on bad options.
  static Result<NotificationFactory> create(const SignOptions& options,
                                            std::string_view default_target);

  // The notification of one event occurrence at `timestamp_ms` (the tamper applied).
  Result<Notification> make(std::int64_t timestamp_ms) const;

  const std::string& event() const noexcept { return event_; }

 private:
  NotificationFactory() = default;
  std::string event_;
  std::string payload_json_;
  nlohmann::ordered_json hook_;
  std::string hook_json_;
  std::string secret_;
  SigningKey key_;
  bool global_ = false;
  Tamper tamper_ = Tamper::none;
};

std::int64_t now_ms();
// POSIX-shell single quoting: the result is one word whatever `text` holds.
std::string shell_quote(std::string_view text);

int run_sign(const SignOptions& options);

}  // namespace tdhook::tools
