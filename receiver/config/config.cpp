// CLI11 2.1's string helpers trip GCC 12's -Wnull-dereference (a false positive in inlined
// std::vector code); our own code keeps the warning through every other file.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "config/config.hpp"

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <sstream>

#include "config/config_file.hpp"
#include "http/url.hpp"
#include "store/nats/nats_store.hpp"

namespace tdhook::receiver {
namespace {

using std::chrono::milliseconds;

// One setting as found in the file or on the command line, with where it came from.
struct Setting {
  std::vector<std::string> values;  // one for scalars
  bool from_file_integer = false;   // a bare TOML integer (durations: seconds)
  std::string where;                // "--max-body" or "tdhook.toml:12: max_body"
  const std::string& value() const { return values.front(); }
};

Error bad(const Setting& s, const std::string& what) {
  return Error{ErrorCode::invalid_config, s.where + ": " + what};
}

Status to_duration(const Setting& s, milliseconds& out) {
  if (s.from_file_integer) {
    // Seconds, bounded as parse_duration bounds text (10^15 ms): beyond, * 1000 overflows.
    const long long seconds = std::stoll(s.value());
    if (seconds < 0 || seconds > 1000000000000LL)
      return bad(s, "bad duration " + s.value() + " (seconds, from 0 to 10^12)");
    out = milliseconds(seconds * 1000);
    return Ok{};
  }
  auto d = parse_duration(s.value());
  if (!d) return bad(s, d.error().detail);
  out = *d;
  return Ok{};
}

template <class Int>
Status to_integer(const Setting& s, Int& out, long long min, long long max) {
  long long v = 0;
  const auto& text = s.value();
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return bad(s, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                      ", got '" + text + "'");
  }
  out = static_cast<Int>(v);
  return Ok{};
}

Status to_bool(const Setting& s, bool& out) {
  if (s.value() == "true")
    out = true;
  else if (s.value() == "false")
    out = false;
  else
    return bad(s, "expected true or false");
  return Ok{};
}

Status to_size(const Setting& s, std::uint64_t& out) {
  auto v = parse_size(s.value());
  if (!v) return bad(s, v.error().detail);
  out = *v;
  return Ok{};
}

// The defaults every sink starts from (then its own [[sink]] keys apply).
struct SinkDefaults {
  std::uint64_t file_max_bytes = 0;
  milliseconds exec_timeout{30000};
  int exec_concurrency = kDefaultExecConcurrency;
  std::vector<std::string> pass_env;
  int retry_max = 8;
  milliseconds retry_base{1000};
  milliseconds http_timeout{10000};
  int http_concurrency = 8;
  std::string http_ca;
};

// Applies a sink option key; false in `known` if the key is not a sink option.
Status apply_sink_key(const std::string& key, const Setting& s, SinkConfig& sink, bool& known) {
  known = true;
  if (key == "file_max_bytes") return to_size(s, sink.file_max_bytes);
  if (key == "exec_timeout") return to_duration(s, sink.exec_timeout);
  if (key == "exec_concurrency") return to_integer(s, sink.exec_concurrency, 1, 1024);
  if (key == "retry_max") return to_integer(s, sink.retry_max, 1, 1000);
  if (key == "retry_base") return to_duration(s, sink.retry_base);
  if (key == "http_timeout") return to_duration(s, sink.http_timeout);
  if (key == "http_concurrency") return to_integer(s, sink.http_concurrency, 1, 1024);
  if (key == "http_ca") return sink.http_ca = s.value(), Status(Ok{});
  if (key == "pass_env") {
    sink.pass_env = s.values;
    return Ok{};
  }
  known = false;
  return Ok{};
}

Setting from_toml(const TomlDocument& doc, const std::string& key, const TomlValue& v) {
  Setting s;
  s.where = toml_where(doc, v.line) + key;
  switch (v.kind) {
    case TomlValue::Kind::string:
      s.values = {v.text};
      break;
    case TomlValue::Kind::integer:
      s.values = {std::to_string(v.integer)};
      s.from_file_integer = true;
      break;
    case TomlValue::Kind::boolean:
      s.values = {v.boolean ? "true" : "false"};
      break;
    case TomlValue::Kind::array:
      s.values = v.items;
      break;
  }
  return s;
}

enum class Kind { scalar, list, flag };

struct Key {
  const char* name;  // TOML key; the flag is --name with '_' -> '-'
  Kind kind;
  const char* help;
};

// Every [receiver] key / flag that is not a key option (those come from key_options.hpp).
const std::vector<Key>& receiver_keys() {
  static const std::vector<Key> keys = {
      {"listen", Kind::scalar, "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 = any)"},
      {"path", Kind::scalar, "URL path Tiledesk posts to (default /)"},
      {"tls_cert", Kind::scalar, "TLS certificate chain (PEM); with --tls-key serves HTTPS"},
      {"tls_key", Kind::scalar, "TLS private key (PEM)"},
      {"tls_min_version", Kind::scalar, "lowest TLS version accepted: 1.2 or 1.3 (default 1.2)"},
      {"no_verify", Kind::flag, "accept unauthenticated events (local development only)"},
      {"max_body", Kind::scalar, "largest accepted body (default 8MiB)"},
      {"read_timeout", Kind::scalar,
       "time to send a request head, and between reads of a body (default 10s)"},
      {"write_timeout", Kind::scalar, "socket write timeout (default 10s)"},
      {"threads", Kind::scalar, "request worker threads (default 16)"},
      {"max_connections", Kind::scalar,
       "open connections at most; more are closed (default 10000)"},
      {"data_dir", Kind::scalar, "spool directory (default ./var/tdhook)"},
      {"dedup_window", Kind::scalar, "how long a retry counts as a duplicate (default 24h)"},
      {"max_pending", Kind::scalar, "undelivered events before answering 503 (default 100000)"},
      {"durability", Kind::scalar, "process|power: what a 200 survives (default process)"},
      {"events", Kind::scalar, "comma-separated event patterns to keep (default: all)"},
      {"sink", Kind::list,
       "stdout | file:PATH | exec:COMMAND | exec-stream:COMMAND | http(s):URL | forward:URL "
       "(repeatable; default stdout)"},
      {"file_max_bytes", Kind::scalar, "rotate file sinks at this size (default: never)"},
      {"exec_timeout", Kind::scalar, "exec sink timeout (default 30s)"},
      {"exec_concurrency", Kind::scalar,
       "parallel runs per exec sink (default 8; 1 = one at a time, in order)"},
      {"pass_env", Kind::list, "environment variable passed to scripts (repeatable)"},
      {"retry_max", Kind::scalar, "delivery attempts before dead-lettering (default 8)"},
      {"retry_base", Kind::scalar, "delay before the second attempt, doubling (default 1s)"},
      {"http_timeout", Kind::scalar,
       "http:/forward: sinks: time for one attempt, connect to answer (default 10s)"},
      {"http_concurrency", Kind::scalar,
       "http:/forward: sinks: requests in flight at once per sink (default 8)"},
      {"http_ca", Kind::scalar, "https: sinks: CA certificates (PEM) (default: the system's)"},
      {"reply", Kind::list, "EVENT=COMMAND: synchronous reply (repeatable)"},
      {"reply_timeout", Kind::scalar, "reply command timeout (default 5s)"},
      {"keep_token", Kind::flag, "keep the token (an API credential) in event records"},
      {"log_level", Kind::scalar, "debug|info|warn|error (default info)"},
      {"store", Kind::scalar,
       "nats://HOST:PORT[,HOST:PORT...] (or tls://): events in NATS JetStream instead of the "
       "embedded log in --data-dir"},
      {"stream", Kind::scalar, "JetStream stream name (default TDHOOK)"},
      {"replicas", Kind::scalar, "copies of the stream in the NATS cluster (default 1)"},
      {"store_creds", Kind::scalar,
       "file with the NATS credentials: a .creds file, user:password or a token"},
      {"store_ca", Kind::scalar, "CA certificates (PEM) for a tls:// store"},
      {"store_timeout", Kind::scalar,
       "how long an event waits for JetStream's acknowledgement before 503 (default 2s)"},
      {"store_fallback", Kind::scalar,
       "off|local: local = an event JetStream does not acknowledge in time is kept in "
       "--data-dir/fallback, answered 200 and forwarded once the stream takes events (default "
       "off)"},
      {"store_fallback_max", Kind::scalar,
       "the longest outage the local fallback covers: once the oldest waiting event is this "
       "old, new events get 503; at most --dedup-window (default 1h)"},
      {"deliver_only", Kind::flag,
       "serve no HTTP: deliver the NATS store's events to the sinks (a worker)"},
      {"inspect", Kind::scalar,
       "HOST:PORT: serve the inspector page and API there (default off; port 0 = any)"},
      {"inspect_token_file", Kind::scalar,
       "file holding the token every inspector request needs (required off loopback)"},
      {"inspect_keep", Kind::scalar, "requests the inspector keeps in memory (default 1000)"},
  };
  return keys;
}

std::string flag_of(std::string_view key) {
  std::string flag = "--" + std::string(key);
  for (auto& c : flag) c = c == '_' ? '-' : c;
  return flag;
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::invalid_config, "cannot read config file " + path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Result<milliseconds> parse_duration(std::string_view text) {
  const auto fail = [&] {
    return Error{ErrorCode::invalid_config,
                 "bad duration '" + std::string(text) + "' (expected e.g. 500ms, 30s, 5m, 24h)"};
  };
  std::size_t i = 0;
  while (i < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[i])) != 0 || text[i] == '.'))
    ++i;
  if (i == 0 || i == text.size()) return fail();
  double number = 0;
  try {
    std::size_t used = 0;
    number = std::stod(std::string(text.substr(0, i)), &used);
    if (used != i) return fail();
  } catch (const std::exception&) {
    return fail();
  }
  const auto unit = text.substr(i);
  double scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m")
    scale = 60000;
  else if (unit == "h")
    scale = 3600000;
  else if (unit == "d")
    scale = 86400000;
  else
    return fail();
  const double ms = number * scale;
  if (!std::isfinite(ms) || ms > 1e15) return fail();
  return milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

Result<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "k" || unit == "K" || unit == "KiB")
    scale = 1024;
  else if (unit == "M" || unit == "MiB")
    scale = 1024 * 1024;
  else if (unit == "G" || unit == "GiB")
    scale = 1024ULL * 1024 * 1024;
  if (ec != std::errc() || end == text.data() || scale == 0 || value > (1ULL << 50) / scale) {
    return Error{ErrorCode::invalid_config,
                 "bad size '" + std::string(text) + "' (expected bytes, or e.g. 64KiB, 8MiB)"};
  }
  return value * scale;
}

Status parse_listen(std::string_view text, std::string& host, int& port) {
  const auto fail = [&] {
    return Error{ErrorCode::invalid_config, "bad --listen '" + std::string(text) +
                                                "' (expected HOST:PORT, e.g. 127.0.0.1:8080)"};
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return fail();
  auto h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']' || h.size() < 3) return fail();
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string_view::npos) {
    return fail();
  }
  const auto p = text.substr(colon + 1);
  int value = -1;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || value < 0 || value > 65535)
    return fail();
  host = std::string(h);
  port = value;
  return Ok{};
}

namespace {

using Settings = std::map<std::string, Setting>;

Status apply_receiver_key(const std::string& key, const Setting& s, Config& c, SinkDefaults& d) {
  if (key == "listen")
    return parse_listen(s.value(), c.host, c.port).ok()
               ? Status(Ok{})
               : Status(bad(s, "expected HOST:PORT, got '" + s.value() + "'"));
  if (key == "path") {
    if (s.value().empty() || s.value().front() != '/') return bad(s, "the path must start with /");
    c.path = s.value();
    return Ok{};
  }
  if (key == "tls_cert") return c.tls_cert = s.value(), Status(Ok{});
  if (key == "tls_key") return c.tls_key = s.value(), Status(Ok{});
  if (key == "tls_min_version") {
    auto version = parse_tls_version(s.value());
    if (!version) return bad(s, "expected 1.2 or 1.3");
    c.tls_min_version = *version;
    return Ok{};
  }
  if (key == "no_verify") return to_bool(s, c.no_verify);
  if (key == "keep_token") return to_bool(s, c.keep_token);
  if (key == "max_body") return to_size(s, c.max_body);
  if (key == "read_timeout") return to_duration(s, c.read_timeout);
  if (key == "write_timeout") return to_duration(s, c.write_timeout);
  if (key == "threads") return to_integer(s, c.threads, 1, 4096);
  if (key == "max_connections") return to_integer(s, c.max_connections, 1, 1000000);
  if (key == "data_dir") return c.data_dir = s.value(), Status(Ok{});
  if (key == "dedup_window") return to_duration(s, c.dedup_window);
  if (key == "max_pending") return to_integer(s, c.max_pending, 1, 1LL << 40);
  if (key == "reply_timeout") return to_duration(s, c.reply_timeout);
  if (key == "durability") {
    if (s.value() == "process")
      c.durability = Durability::process;
    else if (s.value() == "power")
      c.durability = Durability::power;
    else
      return bad(s, "expected process or power");
    return Ok{};
  }
  if (key == "events") {
    auto set = PatternSet::parse(s.value());
    if (!set) return bad(s, set.error().detail);
    c.events_text = s.value();
    c.events = std::move(*set);
    return Ok{};
  }
  if (key == "log_level") {
    return parse_log_level(s.value(), c.log_level)
               ? Status(Ok{})
               : Status(bad(s, "expected debug, info, warn or error"));
  }
  if (key == "reply") {
    for (const auto& rule : s.values) {
      const auto eq = rule.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size())
        return bad(s, "expected EVENT=COMMAND, got '" + rule + "'");
      auto pattern = EventPattern::parse(rule.substr(0, eq));
      if (!pattern) return bad(s, pattern.error().detail);
      c.replies.push_back(ReplyRule{rule.substr(0, eq), std::move(*pattern), rule.substr(eq + 1)});
    }
    return Ok{};
  }
  if (key == "store") {
    if (!is_nats_url(s.value())) return bad(s, "expected nats://HOST:PORT[,HOST:PORT...]");
    c.store_url = s.value();
    return Ok{};
  }
  if (key == "stream") return c.stream = s.value(), Status(Ok{});
  if (key == "replicas") return to_integer(s, c.replicas, 1, 5);
  if (key == "store_creds") return c.store_creds = s.value(), Status(Ok{});
  if (key == "store_ca") return c.store_ca = s.value(), Status(Ok{});
  if (key == "store_timeout") return to_duration(s, c.store_timeout);
  if (key == "store_fallback") {
    if (s.value() != "off" && s.value() != "local") return bad(s, "expected off or local");
    c.store_fallback = s.value() == "local";
    return Ok{};
  }
  if (key == "store_fallback_max") return to_duration(s, c.store_fallback_max);
  if (key == "deliver_only") return to_bool(s, c.deliver_only);
  if (key == "file_max_bytes") return to_size(s, d.file_max_bytes);
  if (key == "exec_timeout") return to_duration(s, d.exec_timeout);
  if (key == "exec_concurrency") return to_integer(s, d.exec_concurrency, 1, 1024);
  if (key == "retry_max") return to_integer(s, d.retry_max, 1, 1000);
  if (key == "retry_base") return to_duration(s, d.retry_base);
  if (key == "http_timeout") return to_duration(s, d.http_timeout);
  if (key == "http_concurrency") return to_integer(s, d.http_concurrency, 1, 1024);
  if (key == "http_ca") return d.http_ca = s.value(), Status(Ok{});
  if (key == "pass_env") return d.pass_env = s.values, Status(Ok{});
  if (key == "inspect") {
    if (auto st = parse_listen(s.value(), c.inspect_host, c.inspect_port); !st)
      return bad(s, st.error().detail);
    return Ok{};
  }
  if (key == "inspect_token_file") return c.inspect_token_file = s.value(), Status(Ok{});
  if (key == "inspect_keep") return to_integer(s, c.inspect_keep, 1, 1000000);
  return Ok{};  // "sink": handled by build_sinks
}

void apply_defaults(const SinkDefaults& d, SinkConfig& sink) {
  sink.file_max_bytes = d.file_max_bytes;
  sink.exec_timeout = d.exec_timeout;
  sink.exec_concurrency = d.exec_concurrency;
  sink.pass_env = d.pass_env;
  sink.retry_max = d.retry_max;
  sink.retry_base = d.retry_base;
  sink.http_timeout = d.http_timeout;
  sink.http_concurrency = d.http_concurrency;
  sink.http_ca = d.http_ca;
}

Result<SinkConfig> sink_from_table(const TomlDocument& doc, const TomlTable& table,
                                   const SinkDefaults& d) {
  const TomlValue* spec = nullptr;
  for (const auto& [key, value] : table.entries) {
    if (key == "spec") spec = &value;
  }
  if (spec == nullptr || spec->kind != TomlValue::Kind::string) {
    return Error{ErrorCode::invalid_config, toml_where(doc, table.line) +
                                                "[[sink]] needs spec = \"stdout\", \"file:PATH\", "
                                                "\"exec:COMMAND\" or \"exec-stream:COMMAND\""};
  }
  auto sink = parse_sink_spec(spec->text);
  if (!sink)
    return Error{ErrorCode::invalid_config, toml_where(doc, spec->line) + sink.error().detail};
  apply_defaults(d, *sink);
  for (const auto& [key, value] : table.entries) {
    const auto s = from_toml(doc, key, value);
    if (key == "spec") continue;
    // These read s.value(), the first item: an array (maybe empty) is refused here, as
    // read_file_settings does for [receiver].
    const bool scalar = key == "name" || key == "file_max_bytes" || key == "exec_timeout" ||
                        key == "exec_concurrency" || key == "retry_max" || key == "retry_base" ||
                        key == "http_timeout" || key == "http_concurrency" || key == "http_ca";
    if (scalar && value.kind == TomlValue::Kind::array) return bad(s, "expected a single value");
    if (key == "name") {
      sink->name = s.value();
      continue;
    }
    if (key == "events") {
      std::string joined;
      for (const auto& v : s.values) joined += (joined.empty() ? "" : ",") + v;
      auto set = PatternSet::parse(joined);
      if (!set) return bad(s, set.error().detail);
      sink->filter = std::move(*set);
      continue;
    }
    bool known = false;
    if (auto applied = apply_sink_key(key, s, *sink, known); !applied) return applied.error();
    if (!known) return bad(s, "unknown [[sink]] key");
  }
  return std::move(*sink);
}

// Reads the [receiver] table into `settings` (the command line then overrides) and returns the
// [[sink]] tables. A key or table it refuses goes to `problems`, and the reading goes on.
std::vector<const TomlTable*> read_file_settings(const TomlDocument& doc, Settings& settings,
                                                 std::vector<std::string>& problems) {
  std::vector<const TomlTable*> sinks;
  for (const auto& table : doc.tables) {
    if (table.name == "sink" && table.array_element) {
      sinks.push_back(&table);
      continue;
    }
    const bool store = table.name == "store" && !table.array_element;
    if ((table.name != "receiver" || table.array_element) && !store) {
      problems.push_back(toml_where(doc, table.line) + "unknown table '" + table.name +
                         "' (expected [receiver], [store] or [[sink]])");
      continue;
    }
    for (const auto& [file_key, value] : table.entries) {
      // [store] url/stream/replicas/creds/ca/timeout are the --store... flags.
      std::string key = file_key;
      if (store) {
        static const std::map<std::string, std::string> store_keys = {
            {"url", "store"},
            {"stream", "stream"},
            {"replicas", "replicas"},
            {"creds", "store_creds"},
            {"ca", "store_ca"},
            {"timeout", "store_timeout"},
            {"fallback", "store_fallback"},
            {"fallback_max", "store_fallback_max"},
            {"deliver_only", "deliver_only"}};
        const auto k = store_keys.find(file_key);
        if (k == store_keys.end()) {
          problems.push_back(bad(from_toml(doc, file_key, value),
                                 "unknown [store] key (expected url, stream, replicas, creds, ca, "
                                 "timeout, fallback, fallback_max, deliver_only)")
                                 .detail);
          continue;
        }
        key = k->second;
      }
      auto s = from_toml(doc, key, value);
      const bool list_ok = key == "pass_env" || key == "reply" || key == "secret_file" ||
                           key == "global_key" || key == "global_secret_file";
      std::string wrong;
      if (key == "sink") {
        wrong = "sinks are [[sink]] tables in the file";
      } else if (value.kind == TomlValue::Kind::array && !list_ok) {
        wrong = "expected a single value";
      } else if (value.kind != TomlValue::Kind::array && list_ok &&
                 value.kind != TomlValue::Kind::string) {
        wrong = "expected a string or an array of strings";
      }
      if (!wrong.empty()) {
        problems.push_back(bad(s, wrong).detail);
        continue;
      }
      settings[key] = std::move(s);
    }
  }
  return sinks;
}

Status apply_key_options_from_file(const Settings& settings, CLI::App& app, KeyOptions& keys) {
  const auto given = [&](const char* flag) { return app.get_option(flag)->count() > 0; };
  for (const auto& [key, s] : settings) {
    if (key == "secret_file" && !given("--secret-file"))
      keys.secret_files = s.values;
    else if (key == "global_key" && !given("--global-key"))
      keys.global_keys = s.values;
    else if (key == "global_secret_file" && !given("--global-secret-file"))
      keys.global_secret_files = s.values;
    else if (key == "mode" && !given("--mode"))
      keys.mode = s.value();
    else if (key == "max_age" && !given("--max-age")) {
      milliseconds age{0};
      if (auto d = to_duration(s, age); !d) return d;
      keys.max_age_s = age.count() / 1000;
    }
  }
  return Ok{};
}

bool is_key_option(const std::string& key) {
  return key == "secret_file" || key == "global_key" || key == "global_secret_file" ||
         key == "mode" || key == "max_age";
}

Status build(CLI::App& app, const std::map<std::string, std::vector<std::string>>& cli_values,
             const std::string& config_path, Config& config) {
  Settings settings;
  std::vector<const TomlTable*> sink_tables;
  TomlDocument doc;
  // Every key, flag and [[sink]] that does not load, not only the first (--check-config lists
  // them all); a file that does not parse as TOML stops at its first syntax error.
  std::vector<std::string> problems;
  const auto note = [&problems](const Status& status) {
    if (!status) problems.push_back(status.error().detail);
  };
  if (!config_path.empty()) {
    auto text = read_text_file(config_path);
    if (!text) return std::move(text).error();
    auto parsed = parse_toml(*text, config_path);
    if (!parsed) return std::move(parsed).error();
    doc = std::move(*parsed);
    sink_tables = read_file_settings(doc, settings, problems);
  }
  for (auto it = settings.begin(); it != settings.end();) {
    bool known = is_key_option(it->first);
    for (const auto& k : receiver_keys()) known = known || it->first == k.name;
    if (known) {
      ++it;
      continue;
    }
    problems.push_back(bad(it->second, "unknown [receiver] key").detail);
    it = settings.erase(it);
  }
  note(apply_key_options_from_file(settings, app, config.keys));
  for (const auto& k : receiver_keys()) {
    const auto* opt = app.get_option(flag_of(k.name));
    if (opt->count() == 0) continue;
    Setting s;
    s.where = flag_of(k.name);
    s.values = k.kind == Kind::flag ? std::vector<std::string>{"true"} : cli_values.at(k.name);
    settings[k.name] = std::move(s);
  }
  SinkDefaults defaults;
  for (const auto& [key, s] : settings) {
    if (is_key_option(key)) continue;
    note(apply_receiver_key(key, s, config, defaults));
  }
  if (auto it = settings.find("sink"); it != settings.end()) {
    for (const auto& spec : it->second.values) {
      auto sink = parse_sink_spec(spec);
      if (!sink) {
        problems.push_back(bad(it->second, sink.error().detail).detail);
        continue;
      }
      apply_defaults(defaults, *sink);
      config.sinks.push_back(std::move(*sink));
    }
  } else if (!sink_tables.empty()) {
    for (const auto* table : sink_tables) {
      auto sink = sink_from_table(doc, *table, defaults);
      if (!sink) {
        problems.push_back(sink.error().detail);
        continue;
      }
      config.sinks.push_back(std::move(*sink));
    }
  } else {
    auto sink = parse_sink_spec("stdout");
    apply_defaults(defaults, *sink);
    config.sinks.push_back(std::move(*sink));
  }
  config.pass_env = defaults.pass_env;
  for (auto& sink : config.sinks) sink.file_sync = config.durability == Durability::power;
  if (!config.store_url.empty() && config.durability == Durability::power) {
    problems.push_back(
        "--durability power cannot be kept with a NATS store: nats-server 2.9 "
        "acknowledges a publish before it reaches the disk (it syncs about once a "
        "minute; nats-io/nats-server#7564), so a 200 means held by the server process "
        "(one replica) or by a quorum of servers (three), not written to a disk");
  }
  if (config.store_fallback && config.store_url.empty()) {
    problems.push_back(
        "--store-fallback local needs a NATS store (--store nats://...): the embedded log is "
        "local already");
  }
  if (config.store_fallback && config.store_fallback_max > config.dedup_window) {
    problems.push_back(
        "--store-fallback-max is longer than --dedup-window (the stream's duplicate window): an "
        "event kept locally that long could be stored twice when it is forwarded");
  }
  if (config.deliver_only && config.store_url.empty()) {
    problems.push_back(
        "--deliver-only needs a NATS store (--store nats://...): the embedded log "
        "belongs to one receiver");
  }
  if (!config.inspect_host.empty() && config.inspect_token_file.empty() &&
      !is_loopback_host(config.inspect_host)) {
    problems.push_back("--inspect on " + config.inspect_host +
                       " needs --inspect-token-file: the inspector shows payloads, which hold "
                       "personal data (without a token it binds to 127.0.0.1, ::1 or localhost "
                       "only)");
  }
  if (config.tls_cert.empty() != config.tls_key.empty()) {
    problems.push_back("--tls-cert and --tls-key go together");
  }
  if (config.tls_cert.empty() && settings.count("tls_min_version") != 0) {
    problems.push_back(
        bad(settings.at("tls_min_version"), "needs --tls-cert and --tls-key").detail);
  }
  if (problems.empty()) return Ok{};
  std::string all;
  for (const auto& p : problems) all += (all.empty() ? "" : "\n") + p;
  return Error{ErrorCode::invalid_config, std::move(all)};
}

}  // namespace

ConfigOutcome load_config(int argc, const char* const* argv, Config& config, std::ostream& out,
                          std::ostream& err) {
  CLI::App app{
      "tdhook-receiver: receives Tiledesk webhooks, verifies them, stores them durably "
      "and forwards them to stdout, files and scripts"};
  app.set_version_flag("--version", "tdhook-receiver " TDHOOK_VERSION);
  std::map<std::string, std::vector<std::string>> cli_values;
  std::string config_path;
  app.add_option("--config", config_path, "TOML configuration file (flags override it)");
  for (const auto& k : receiver_keys()) {
    const auto flag = flag_of(k.name);
    auto& values = cli_values[k.name];
    if (k.kind == Kind::flag) {
      app.add_flag(flag, k.help);
    } else if (k.kind == Kind::list) {
      app.add_option(flag, values, k.help)->take_all();
    } else {
      app.add_option(flag, values, k.help)
          ->expected(1)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
  }
  add_key_options(app, config.keys);
  bool check = false;
  app.add_flag("--check-config", check,
               "check the flags, the config file, the secret, key, TLS and token files and the "
               "sinks; print what would run and exit 0, or list every problem found and exit 2; "
               "never listens");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return ConfigOutcome{false, code == 0 ? 0 : 2};
  }
  if (auto built = build(app, cli_values, config_path, config); !built) {
    // One problem per line.
    std::istringstream lines(built.error().detail);
    int count = 0;
    for (std::string line; std::getline(lines, line); ++count)
      err << "tdhook-receiver: " << line << '\n';
    if (count > 1) err << "tdhook-receiver: " << count << " problems found\n";
    return ConfigOutcome{false, 2};
  }
  config.check_config = check;
  return ConfigOutcome{true, 0};
}

}  // namespace tdhook::receiver
