#pragma once
// tdhook-receiver's configuration: command-line flags (CLI11) and an optional TOML file
// (`--config FILE`, see config_file.hpp). A flag given on the command line wins over the file.
//
// Sink options: `--file-max-bytes`, `--exec-timeout`, `--exec-concurrency`, `--pass-env`,
// `--retry-max`, `--retry-base` (or the same keys in [receiver]) are the defaults of every sink;
// a [[sink]] table's own key overrides them for that sink. `--sink` flags replace the file's
// [[sink]] tables; with neither, the one sink is stdout.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "config/key_options.hpp"
#include "delivery/dispatcher.hpp"
#include "http/tls.hpp"
#include "store/store.hpp"
#include "tdhook/pattern.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

// `--reply EVENT=COMMAND`: EVENT is a pattern (pattern.hpp), COMMAND runs under /bin/sh -c.
struct ReplyRule {
  std::string event;
  EventPattern pattern;
  std::string command;
};

struct Config {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = any free port
  std::string path = "/";
  std::string tls_cert, tls_key;
  TlsVersion tls_min_version = TlsVersion::tls1_2;
  KeyOptions keys;
  bool no_verify = false;
  std::uint64_t max_body = 8 * 1024 * 1024;
  std::chrono::milliseconds read_timeout{10000}, write_timeout{10000};
  std::size_t threads = 16;             // request workers (the event loop is one more thread)
  std::size_t max_connections = 10000;  // also bounded by the descriptor limit
  std::filesystem::path data_dir = "./var/tdhook";
  std::chrono::milliseconds dedup_window{24LL * 3600 * 1000};
  std::size_t max_pending = 100000;
  Durability durability = Durability::process;
  std::string events_text;  // --events as given ("" = all)
  PatternSet events;
  std::vector<SinkConfig> sinks;
  std::vector<std::string> pass_env;  // also the reply commands' extra environment
  std::vector<ReplyRule> replies;
  std::chrono::milliseconds reply_timeout{5000};
  bool keep_token = false;
  LogLevel log_level = LogLevel::info;
  // --store nats://... (or [store] url in the file): events go to NATS JetStream instead of the
  // embedded log in data_dir (store/nats/nats_store.hpp).
  std::string store_url;
  std::string stream = "TDHOOK";
  int replicas = 1;
  std::string store_creds, store_ca;
  std::chrono::milliseconds store_timeout{2000};
  // --store-fallback local: events the stream does not acknowledge in time wait in an embedded
  // log in data_dir/fallback and are forwarded later (store/nats/fallback.hpp).
  bool store_fallback = false;
  std::chrono::milliseconds store_fallback_max{3600LL * 1000};
  bool deliver_only = false;  // no HTTP listener: a delivery worker of a NATS store
  // --inspect HOST:PORT: the inspector page and its JSON API (inspect/), off when inspect_host
  // is empty. On an address other than loopback it needs --inspect-token-file.
  std::string inspect_host;
  int inspect_port = 0;  // 0 = any free port
  std::string inspect_token_file;
  std::size_t inspect_keep = 1000;  // requests the inspector keeps in memory
  bool check_config = false;  // --check-config: check, print what would run, exit; never listens
};

// What main() should do after reading the command line.
struct ConfigOutcome {
  bool run = false;  // false: exit with exit_code (--help, --version, or an error already printed)
  int exit_code = 0;
};

// Parses argv (and the --config file); prints help to `out` and errors to `err`.
ConfigOutcome load_config(int argc, const char* const* argv, Config& config, std::ostream& out,
                          std::ostream& err);

// "500ms", "30s", "5m", "24h" (also "1.5s"); invalid_config otherwise.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// "1048576", "64KiB", "8MiB", "1GiB" (also k/K, M, G: powers of 1024).
Result<std::uint64_t> parse_size(std::string_view text);
// "HOST:PORT" or "[IPv6]:PORT"; the port may be 0.
Status parse_listen(std::string_view text, std::string& host, int& port);

}  // namespace tdhook::receiver
