#pragma once
// What SIGHUP reloads without a restart (issue 14): the verifier (secret files, TDHOOK_SECRETS,
// global keys), the --events filter and the TLS certificate and key (issue 16). The intake takes
// the current settings once per request and keeps them to its end, so a request in flight finishes
// with the settings it started with; a reload swaps in a whole new set atomically. The TLS context
// is taken once per connection: a connection keeps the certificate it was accepted with. Sinks,
// listeners and every other option are read once at start (README, "Reloading").

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "http/tls.hpp"
#include "tdhook/pattern.hpp"
#include "tdhook/verify.hpp"

namespace tdhook::receiver {

struct LiveConfig {
  std::optional<Verifier> verifier;          // nullopt: --no-verify
  PatternSet events;                         // empty: every event
  std::string events_text;                   // as given, for logs
  std::size_t secrets = 0, global_keys = 0;  // what the verifier was made of, for logs
  std::shared_ptr<const TlsContext> tls;     // null: plain HTTP
};

class LiveSettings {
 public:
  explicit LiveSettings(std::shared_ptr<const LiveConfig> initial) : current_(std::move(initial)) {}
  std::shared_ptr<const LiveConfig> get() const noexcept { return current_.load(); }
  void set(std::shared_ptr<const LiveConfig> next) noexcept { current_.store(std::move(next)); }

 private:
  std::atomic<std::shared_ptr<const LiveConfig>> current_;
};

}  // namespace tdhook::receiver
