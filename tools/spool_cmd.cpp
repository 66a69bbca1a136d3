// GCC 12 at -O2 reports a potential null dereference inside CLI11 2.1's inlined string
// splitting (a false positive in the library's header, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

// `tdhook spool`: list, show, retry and purge what a receiver holds in its store. The log store
// (store/log/) is opened by one process at a time: without a running receiver this command
// opens it itself (for inspection: nothing is imported, a torn tail is left for the receiver to
// cut); while a receiver holds it, every request goes to that receiver over its admin socket,
// <data-dir>/admin.sock (store/admin.hpp), and is answered from what the receiver holds.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "commands.hpp"
#include "config/config.hpp"
#include "inspect/views.hpp"
#include "store/admin.hpp"
#include "store/log/log_store.hpp"
#include "store/nats/nats_store.hpp"
#include "store/record.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::tools {
namespace {

using receiver::DeliveryInfo;
using receiver::DeliveryState;
using receiver::Details;
using receiver::Store;

// Keeps the record's own key order (and ours) in what we print.
using Json = nlohmann::ordered_json;

constexpr int kNotFound = 1;
constexpr int kUsage = 2;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-26T19:45:04.123Z"
std::string iso_time(std::int64_t ms) { return receiver::format_iso8601_ms(ms); }

// A script's error output on one table line: control characters become spaces, long text is cut.
std::string one_line(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += std::iscntrl(static_cast<unsigned char>(c)) != 0 ? ' ' : c;
  }
  return out;
}

// An ISO 8601 time, UTC unless it says otherwise: 2026-11-26, 2026-11-26T19:45,
// 2026-11-26T19:45:04Z, 2026-11-26T19:45:04.5+02:00.
Result<std::int64_t> parse_iso_time(const std::string& text) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, consumed = 0;
  double sec = 0;
  const auto bad = Error{ErrorCode::invalid_input, "'" + text + "' is not an ISO 8601 time"};
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3) return bad;
  std::string_view rest = std::string_view(text).substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && (rest[0] == 'T' || rest[0] == ' ')) {
    const std::string tail(rest.substr(1));
    int n = 0;
    if (std::sscanf(tail.c_str(), "%2d:%2d%n", &h, &mi, &n) != 2) return bad;
    rest = rest.substr(1 + static_cast<std::size_t>(n));
    if (!rest.empty() && rest[0] == ':') {
      const std::string secs(rest.substr(1));
      if (std::sscanf(secs.c_str(), "%lf%n", &sec, &n) != 1 || sec < 0 || sec >= 61) return bad;
      rest = rest.substr(1 + static_cast<std::size_t>(n));
    }
  }
  std::int64_t offset_min = 0;
  if (rest == "Z" || rest == "z") {
    rest = {};
  } else if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
    int oh = 0, om = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &oh, &om) != 2) return bad;
    offset_min = (rest[0] == '-' ? -1 : 1) * (oh * 60 + om);
    rest = {};
  }
  if (!rest.empty() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59) return bad;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  const std::int64_t seconds = timegm(&tm);
  return (seconds - offset_min * 60) * 1000 + static_cast<std::int64_t>(sec * 1000);
}

// --since: a duration back from now, or an ISO time.
Result<std::int64_t> parse_since(const std::string& text, std::int64_t now) {
  if (auto age = receiver::parse_duration(text)) return now - age->count();
  return parse_iso_time(text);
}

DeliveryState parse_state_name(std::string_view name) {
  if (name == "delivered") return DeliveryState::delivered;
  if (name == "dead") return DeliveryState::dead;
  return DeliveryState::pending;
}

std::string pretty_record(const std::string& record) {
  auto parsed = Json::parse(record, nullptr, false);
  return parsed.is_discarded() ? record : parsed.dump(2);
}

// Left-aligned columns separated by two spaces; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out) const {
    if (rows_.size() == 1) return;
    std::vector<std::size_t> width(rows_[0].size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

struct SpoolArgs {
  std::string data_dir = "./var/tdhook";
  // --store nats://...: the JetStream store instead of --data-dir
  std::string store, stream = "TDHOOK", store_creds, store_ca, store_timeout = "5s";
  // ls
  std::string state, events, sink, since;
  std::size_t limit = 1000;
  bool json = false;
  // show, retry
  std::string id;
  bool dead = false;
  // purge
  bool delivered = false;
  std::string older_than;
};

int fail(int code, const std::string& message) {
  std::cerr << "tdhook spool: " << message << "\n";
  return code;
}

// The store must exist already: opening one in a mistyped directory would create an empty
// store there and hide the mistake.
Result<std::unique_ptr<Store>> open_store(const SpoolArgs& args) {
  if (!args.store.empty()) {
    if (!receiver::is_nats_url(args.store)) {
      return Error{ErrorCode::invalid_config,
                   "--store takes nats://HOST:PORT[,HOST:PORT...] (or tls://)"};
    }
    auto timeout = receiver::parse_duration(args.store_timeout);
    if (!timeout) return std::move(timeout).error();
    receiver::NatsStoreOptions options;
    options.url = args.store;
    options.stream = args.stream;
    options.creds_file = args.store_creds;
    options.ca_file = args.store_ca;
    options.timeout = *timeout;
    options.deliver = false;
    options.for_inspection = true;
    return receiver::open_nats_store(options, receiver::Logger(receiver::LogLevel::warn));
  }
  const std::filesystem::path dir = args.data_dir;
  std::error_code ec;
  const auto has = [&](const char* name) { return std::filesystem::exists(dir / name, ec); };
  if (!has("state.db") && !has("log") && !has("store.lock")) {
    if (has("spool.db")) {
      return Error{ErrorCode::invalid_config,
                   "no store in " + args.data_dir +
                       " yet, only an old spool.db: start tdhook-receiver once to import it"};
    }
    return Error{ErrorCode::invalid_config,
                 "no store in " + args.data_dir + " (no state.db nor log/; see --data-dir)"};
  }
  // The configured sinks are the receiver's to know; those that have state are the ones with
  // anything to show.
  auto sinks = receiver::stored_sink_names(dir);
  if (!sinks) return std::move(sinks).error();
  receiver::LogStoreOptions options;
  options.store.data_dir = dir;
  options.store.sinks = std::move(*sinks);
  options.for_inspection = true;
  auto opened = receiver::open_log_store(options, receiver::Logger(receiver::LogLevel::warn));
  if (opened) return opened;
  if (!receiver::is_store_busy(opened.error())) return opened;
  return std::unique_ptr<Store>(
      std::make_unique<receiver::RemoteStore>(receiver::admin_socket_path(dir)));
}

Json info_json(const DeliveryInfo& d) {
  return {
      {"id", d.delivery_id},
      {"sink", d.sink},
      {"event", d.event},
      {"project_id", d.project_id},
      {"timestamp", d.timestamp_ms},
      {"received_at", iso_time(d.received_at_ms)},
      {"state", to_string(d.state)},
      {"attempts", d.attempts},
      {"next_attempt_at",
       d.state == DeliveryState::pending ? Json(iso_time(d.next_attempt_at_ms)) : Json(nullptr)},
      {"last_error", d.last_error}};
}

std::string note(const DeliveryInfo& d) {
  if (d.state == DeliveryState::pending && d.attempts > 0) {
    return "next " + iso_time(d.next_attempt_at_ms) + ": " + one_line(d.last_error, 60);
  }
  return d.state == DeliveryState::dead ? one_line(d.last_error, 80) : "";
}

void print_table(const std::vector<DeliveryInfo>& rows) {
  Table table({"RECEIVED", "ID", "EVENT", "SINK", "STATE", "ATTEMPTS", "NOTE"});
  for (const auto& d : rows) {
    table.add({iso_time(d.received_at_ms), d.delivery_id, d.event, d.sink.empty() ? "-" : d.sink,
               std::string(to_string(d.state)), std::to_string(d.attempts), note(d)});
  }
  table.print(std::cout);
}

int run_ls(const SpoolArgs& args) {
  receiver::ListFilter filter;
  filter.limit = args.limit;
  if (!args.state.empty()) filter.state = parse_state_name(args.state);
  if (!args.sink.empty()) filter.sink = args.sink;
  if (!args.events.empty()) {
    if (auto patterns = PatternSet::parse(args.events); !patterns) {
      return fail(kUsage, "--event: " + patterns.error().detail);
    }
    filter.event_pattern = args.events;
  }
  if (!args.since.empty()) {
    auto since = parse_since(args.since, now_ms());
    if (!since) return fail(kUsage, "--since: " + since.error().detail);
    filter.since_ms = *since;
  }
  auto spool = open_store(args);
  if (!spool) return fail(kUsage, spool.error().detail);
  auto rows = (*spool)->list(filter);
  if (!rows) return fail(kUsage, rows.error().detail);
  if (args.json) {
    for (const auto& d : *rows) std::cout << info_json(d).dump() << "\n";
  } else {
    print_table(*rows);
  }
  std::cout.flush();
  return 0;
}

// The receiver's --path is not kept with the original: the request line says so.
constexpr std::string_view kUnknownPath = "(the receiver's --path)";

// The original request kept for forward: sinks, as HTTP/1.1 text with the x-hook-secret value
// and the body's token masked (the inspector's raw download); nullopt when none is kept, or when
// what is kept cannot be read (then nothing of it is shown, since it holds the secret).
std::optional<std::string> masked_original(const Details& details) {
  if (details.original.empty()) return std::nullopt;
  return receiver::inspect::raw_original(details.original, kUnknownPath);
}

void print_details(const Details& details) {
  std::cout << pretty_record(details.record) << "\n\n";
  if (const auto original = masked_original(details)) {
    std::cout << "original request (kept for forward: sinks; secret and token masked)\n"
              << *original << (original->ends_with('\n') ? "\n" : "\n\n");
  } else if (!details.original.empty()) {
    std::cout << "original request: kept, but unreadable (" << details.original.size()
              << " bytes); not shown\n\n";
  }
  Table deliveries({"SINK", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"});
  for (const auto& d : details.deliveries) {
    deliveries.add({d.sink, std::string(to_string(d.state)), std::to_string(d.attempts),
                    d.state == DeliveryState::pending ? iso_time(d.next_attempt_at_ms) : "-",
                    one_line(d.last_error, 80)});
  }
  if (details.deliveries.empty()) std::cout << "no sink took this event\n";
  deliveries.print(std::cout);
  if (details.attempts.empty()) return;
  std::cout << "\n";
  Table attempts({"SINK", "ATTEMPT", "STARTED", "DURATION", "RESULT"});
  for (const auto& [sink, a] : details.attempts) {
    attempts.add({sink, std::to_string(a.number), iso_time(a.started_at_ms),
                  std::to_string(a.finished_at_ms - a.started_at_ms) + " ms",
                  a.ok ? "ok" : one_line(a.error, 80)});
  }
  attempts.print(std::cout);
}

Json details_json(const Details& details) {
  Json out;
  auto record = Json::parse(details.record, nullptr, false);
  out["record"] = record.is_discarded() ? Json(details.record) : record;
  const auto original = masked_original(details);
  out["original"] = original ? Json(*original) : Json(nullptr);
  out["deliveries"] = Json::array();
  for (const auto& d : details.deliveries) out["deliveries"].push_back(info_json(d));
  out["attempts"] = Json::array();
  for (const auto& [sink, a] : details.attempts) {
    out["attempts"].push_back({{"sink", sink},
                               {"number", a.number},
                               {"started_at", iso_time(a.started_at_ms)},
                               {"finished_at", iso_time(a.finished_at_ms)},
                               {"ok", a.ok},
                               {"error", a.error}});
  }
  return out;
}

int run_show(const SpoolArgs& args) {
  auto spool = open_store(args);
  if (!spool) return fail(kUsage, spool.error().detail);
  auto details = (*spool)->show(args.id);
  if (!details) {
    const bool missing = receiver::is_not_found(details.error());
    return fail(missing ? kNotFound : kUsage, details.error().detail);
  }
  if (args.json) {
    // Header values kept in the original may hold bytes that are not UTF-8.
    std::cout << details_json(*details).dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
  } else {
    print_details(*details);
  }
  std::cout.flush();
  return 0;
}

int run_retry(const SpoolArgs& args) {
  if (args.id.empty() == !args.dead) return fail(kUsage, "retry: give either an ID or --dead");
  auto spool = open_store(args);
  if (!spool) return fail(kUsage, spool.error().detail);
  std::optional<std::string> id;
  if (!args.id.empty()) id = args.id;
  auto n = (*spool)->retry(id, args.dead);
  if (!n) {
    const bool missing = receiver::is_not_found(n.error());
    return fail(missing ? kNotFound : kUsage, n.error().detail);
  }
  if (id && *n == 0) return fail(kNotFound, "nothing to retry: " + *id + " was delivered");
  std::cout << *n << (*n == 1 ? " delivery" : " deliveries")
            << " back to pending, due now (a running receiver takes them at its next poll)\n";
  return 0;
}

int run_purge(const SpoolArgs& args) {
  if (!args.delivered) return fail(kUsage, "purge: only --delivered events can be purged");
  auto age = receiver::parse_duration(args.older_than);
  if (!age) return fail(kUsage, "--older-than: " + age.error().detail);
  auto spool = open_store(args);
  if (!spool) return fail(kUsage, spool.error().detail);
  auto n = (*spool)->purge_delivered(now_ms() - age->count());
  if (!n) return fail(kUsage, n.error().detail);
  std::cout << "purged " << *n << (*n == 1 ? " event" : " events") << "\n";
  return 0;
}

void on_run(CLI::App* cmd, std::shared_ptr<SpoolArgs> args, int (*run)(const SpoolArgs&)) {
  cmd->callback([args, run] {
    if (const int code = run(*args); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace

void setup_spool(CLI::App& app) {
  auto args = std::make_shared<SpoolArgs>();
  auto* spool = app.add_subcommand("spool", "Inspect and replay what a receiver holds");
  spool->require_subcommand(1);
  // Options of `spool` are accepted after its subcommand too: `tdhook spool ls --data-dir X`.
  spool->fallthrough();
  spool->add_option("--data-dir", args->data_dir, "The receiver's data directory")
      ->capture_default_str();
  spool->add_option("--store", args->store,
                    "A NATS JetStream store instead: nats://HOST:PORT[,HOST:PORT...]");
  spool->add_option("--stream", args->stream, "The JetStream stream (with --store)")
      ->capture_default_str();
  spool->add_option("--store-creds", args->store_creds,
                    "NATS credentials file: .creds, user:password or a token (with --store)");
  spool->add_option("--store-ca", args->store_ca, "CA certificates for tls:// (with --store)");
  spool->add_option("--store-timeout", args->store_timeout, "Wait for NATS answers this long")
      ->capture_default_str();
  spool->footer(
      "Without a running receiver, the store in --data-dir is opened directly. While a receiver "
      "holds it, every command is answered by that receiver over <data-dir>/admin.sock. With "
      "--store nats://..., the commands read and change the JetStream streams directly, whatever "
      "receivers run.");

  auto* ls = spool->add_subcommand("ls", "List deliveries, oldest first");
  ls->add_option("--state", args->state, "pending, delivered or dead")
      ->check(CLI::IsMember({"pending", "delivered", "dead"}));
  ls->add_option("--event", args->events, "Event patterns, comma-separated (request.*, ...)");
  ls->add_option("--sink", args->sink, "Only this sink");
  ls->add_option("--since", args->since, "Received since: a duration back (15m, 24h) or ISO time");
  ls->add_option("--limit", args->limit, "At most this many rows (0 = all)")->capture_default_str();
  ls->add_flag("--json", args->json, "NDJSON, one delivery per line");
  on_run(ls, args, run_ls);

  auto* show = spool->add_subcommand("show", "An event's record, deliveries and attempts");
  show->add_option("ID", args->id, "Delivery id")->required();
  show->add_flag("--json", args->json, "One JSON object");
  on_run(show, args, run_show);

  auto* retry = spool->add_subcommand("retry", "Deliver again: one event, or every dead one");
  retry->add_option("ID", args->id, "Delivery id (its undelivered sinks become due now)");
  retry->add_flag("--dead", args->dead, "Every dead delivery");
  on_run(retry, args, run_retry);

  auto* purge = spool->add_subcommand("purge", "Remove old delivered events");
  purge->add_flag("--delivered", args->delivered, "Delivered events (required)")->required();
  purge->add_option("--older-than", args->older_than, "Age: 30s, 15m, 24h, 7d")->required();
  on_run(purge, args, run_purge);
}

}  // namespace tdhook::tools
