// GCC 12 at -O2 reports a potential null dereference inside CLI11 2.1's inlined string
// splitting (a false positive in the library's header, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

// `tdhook sign`: prints a notification body exactly as Tiledesk builds it, or a curl command.
#include "sign_cmd.hpp"

#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>

#include "commands.hpp"
#include "config/key_options.hpp"
#include "store/record.hpp"
#include "samples.hpp"

namespace tdhook::tools {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kSampleProject = "65533a0cb7e1c3d9503a10f1";
constexpr std::int64_t kHourMs = 3600 * 1000;
// base64url of {"alg":"none","typ":"JWT"}
constexpr std::string_view kNoneHeader = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

std::string random_hex(std::size_t digits) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < digits; ++i) out.push_back(kHex[rng() % 16]);
  return out;
}

// Like a MongoDB ObjectId: 4 bytes of seconds, 5 random bytes, a 3-byte counter.
std::string object_id() {
  static std::atomic<std::uint32_t> counter{static_cast<std::uint32_t>(std::random_device{}())};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08llx%s%06x",
                static_cast<unsigned long long>(now_ms() / 1000) & 0xffffffffULL,
                random_hex(10).c_str(), counter.fetch_add(1) & 0xffffffU);
  return buf;
}

std::string uuid_v4() {
  auto hex = random_hex(32);
  hex[12] = '4';
  hex[16] = "89ab"[std::stoi(hex.substr(16, 1), nullptr, 16) % 4];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string iso_time(std::int64_t ms) { return receiver::format_iso8601_ms(ms); }

Result<std::string> read_text(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::invalid_input, "cannot read " + std::string(what) + " " + path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The sample for `event`, or for its closest parent name (message.create.channel.whatsapp uses
// message.create's payload, event.emit.<name> uses event.emit's).
Result<std::string> sample_for(std::string_view event) {
  std::string name(event);
  while (true) {
    if (auto text = read_sample(name)) return text;
    const auto dot = name.rfind('.');
    if (dot == std::string::npos) break;
    name.resize(dot);
  }
  return read_sample(event);  // for its error message
}

// Tiledesk's key order for a subscription as sent in `hook`.
Json fresh_hook(std::string_view event) {
  const auto now = iso_time(now_ms());
  Json hook;
  hook["_id"] = object_id();
  hook["target"] = "http://localhost/";
  hook["event"] = event;
  hook["id_project"] = kSampleProject;
  hook["createdBy"] = object_id();
  hook["createdAt"] = now;
  hook["updatedAt"] = now;
  hook["__v"] = 0;
  return hook;
}

Status load_sample_source(const SignOptions& options, std::string& event, Json& hook,
                          std::string& payload) {
  auto text = options.sample.empty() ? sample_for(event) : read_sample(options.sample);
  if (!text) return std::move(text).error();
  const auto doc = Json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("payload") || !doc.contains("hook") ||
      !doc["hook"].is_object()) {
    return Error{ErrorCode::invalid_input,
                 "the sample is not a notification with payload and hook"};
  }
  hook = doc["hook"];
  payload = doc["payload"].dump(-1, ' ', false, Json::error_handler_t::strict);
  if (event.empty()) event = options.sample;
  return Ok{};
}

Result<SigningKey> global_signing_key(const SignOptions& options) {
  if (!options.global_secret_file.empty()) {
    receiver::KeyOptions keys;
    keys.global_secret_files = {options.global_secret_file};
    auto read = receiver::make_verifier_options(keys);
    if (!read) return std::move(read).error();
    return SigningKey{Algorithm::hs256, read->global_keys.front().material};
  }
  const auto colon = options.global_key.find(':');
  const auto alg = algorithm_from_string(options.global_key.substr(0, colon));
  if (colon == std::string::npos || !alg) {
    return Error{ErrorCode::invalid_config,
                 "--global-key expects ALG:PRIVATE_PEM_FILE with ALG one of HS256, RS256, RS384, "
                 "RS512, ES256, ES384, PS256"};
  }
  auto text = read_text(options.global_key.substr(colon + 1), "global key file");
  if (!text) return std::move(text).error();
  if (*alg == Algorithm::hs256) {
    while (!text->empty() && std::isspace(static_cast<unsigned char>(text->back()))) {
      text->pop_back();
    }
  }
  if (text->empty()) return Error{ErrorCode::invalid_config, "the global key file is empty"};
  return SigningKey{*alg, std::move(*text)};
}

Status load_secret(const SignOptions& options, std::string& secret) {
  receiver::KeyOptions keys;
  keys.secret_files = options.secret_files;
  auto read = receiver::make_verifier_options(keys);
  if (!read) return std::move(read).error();
  if (!read->secrets.empty()) secret = read->secrets.front();
  return Ok{};
}

void override_hook(Json& hook, const SignOptions& options, std::string_view event,
                   std::string_view default_target) {
  hook["event"] = event;
  if (!options.subscription_id.empty()) hook["_id"] = options.subscription_id;
  if (!options.project_id.empty()) hook["id_project"] = options.project_id;
  if (!options.target.empty()) {
    hook["target"] = options.target;
  } else if (!default_target.empty()) {
    hook["target"] = default_target;
  }
}

// The token is the body's last member: {"timestamp":…,…,"token":"<jwt>"}.
std::string_view token_of(std::string_view body) {
  const auto start = body.rfind("\"token\":\"");
  if (start == std::string_view::npos || body.size() < start + 11) return {};
  return body.substr(start + 9, body.size() - 2 - (start + 9));
}

std::string replace_token(std::string body, std::string_view token) {
  const auto old = token_of(body);
  const auto offset = static_cast<std::size_t>(old.data() - body.data());
  body.replace(offset, old.size(), token);
  return body;
}

}  // namespace

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string shell_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::optional<Tamper> tamper_from_string(std::string_view name) {
  static const std::pair<std::string_view, Tamper> kNames[] = {
      {"none", Tamper::none},
      {"wrong-secret", Tamper::wrong_secret},
      {"no-secret", Tamper::no_secret},
      {"bad-signature", Tamper::bad_signature},
      {"alg-none", Tamper::alg_none},
      {"stale", Tamper::stale},
      {"future", Tamper::future},
      {"hook-mismatch", Tamper::hook_mismatch},
      {"duplicate-key", Tamper::duplicate_key}};
  for (const auto& [text, tamper] : kNames) {
    if (text == name) return tamper;
  }
  return std::nullopt;
}

Result<NotificationFactory> NotificationFactory::create(const SignOptions& options,
                                                        std::string_view default_target) {
  NotificationFactory f;
  const auto tamper = tamper_from_string(options.tamper);
  if (!tamper) return Error{ErrorCode::invalid_input, "unknown --tamper " + options.tamper};
  f.tamper_ = *tamper;
  f.event_ = options.event;
  if (f.event_.empty() && options.sample.empty()) {
    return Error{ErrorCode::invalid_input, "give --event EVENT or --sample NAME"};
  }
  if (!options.payload_file.empty()) {
    auto text = read_text(options.payload_file, "payload file");
    if (!text) return std::move(text).error();
    if (Json::parse(*text, nullptr, false).is_discarded()) {
      return Error{ErrorCode::invalid_input, "the payload file is not JSON"};
    }
    f.payload_json_ = std::move(*text);
    f.hook_ = fresh_hook(f.event_);
  } else if (auto st = load_sample_source(options, f.event_, f.hook_, f.payload_json_); !st) {
    return std::move(st).error();
  }
  override_hook(f.hook_, options, f.event_, default_target);
  f.hook_json_ = f.hook_.dump();
  if (auto st = load_secret(options, f.secret_); !st) return std::move(st).error();
  f.global_ = !options.global_key.empty() || !options.global_secret_file.empty();
  if (f.global_) {
    auto key = global_signing_key(options);
    if (!key) return std::move(key).error();
    f.key_ = std::move(*key);
  } else if (f.secret_.empty()) {
    return Error{ErrorCode::invalid_config,
                 "no secret: give --secret-file FILE (or TDHOOK_SECRETS), or --global-key"};
  } else {
    f.key_ = SigningKey{Algorithm::hs256, f.secret_};
  }
  return f;
}

Result<Notification> NotificationFactory::make(std::int64_t timestamp_ms) const {
  if (tamper_ == Tamper::stale) timestamp_ms -= kHourMs;
  if (tamper_ == Tamper::future) timestamp_ms += kHourMs;
  NotificationInput input{payload_json_, hook_json_, timestamp_ms, global_};
  auto body = build_notification(input, key_);
  if (!body) return std::move(body).error();
  Notification out{std::move(*body), secret_};
  switch (tamper_) {
    case Tamper::wrong_secret:
      out.secret = uuid_v4();
      break;
    case Tamper::no_secret:
      out.secret.clear();
      break;
    case Tamper::bad_signature: {
      std::string token(token_of(out.body));
      auto& first = token[token.rfind('.') + 1];
      first = first == 'A' ? 'B' : 'A';
      out.body = replace_token(std::move(out.body), token);
      break;
    }
    case Tamper::alg_none: {
      const auto token = token_of(out.body);
      const auto claims = token.substr(token.find('.'), token.rfind('.') - token.find('.') + 1);
      out.body = replace_token(std::move(out.body), std::string(kNoneHeader) + std::string(claims));
      break;
    }
    case Tamper::hook_mismatch: {
      auto other = hook_;
      other["_id"] = object_id();
      const auto other_json = other.dump();
      auto other_body =
          build_notification({payload_json_, other_json, timestamp_ms, global_}, key_);
      if (!other_body) return std::move(other_body).error();
      out.body = replace_token(std::move(out.body), token_of(*other_body));
      break;
    }
    case Tamper::duplicate_key: {
      const auto at = out.body.find("\"hook\":{");
      out.body.insert(at + 8, "\"event\":" + Json(event_ + ".tampered").dump() + ",");
      break;
    }
    default:
      break;
  }
  return out;
}

void add_notification_options(CLI::App& cmd, SignOptions& o) {
  cmd.add_option("--event", o.event, "Event name (hook.event); alone, uses the bundled sample");
  auto* payload =
      cmd.add_option("--payload", o.payload_file, "Payload JSON file")->type_name("FILE");
  cmd.add_option("--sample", o.sample, "Bundled sample (see `tdhook events`); implies --event")
      ->excludes(payload);
  cmd.add_option("--secret-file", o.secret_files,
                 "Subscription secret file (first line is used; TDHOOK_SECRETS also works)")
      ->type_name("FILE");
  cmd.add_option("--subscription-id", o.subscription_id, "hook._id")->type_name("ID");
  cmd.add_option("--project-id", o.project_id, "hook.id_project")->type_name("ID");
  cmd.add_option("--target", o.target, "hook.target")->type_name("URL");
  cmd.add_option("--global-key", o.global_key,
                 "Sign as a global subscription with ALG:PRIVATE_PEM_FILE (RS256, ES256, ...)")
      ->type_name("ALG:FILE");
  cmd.add_option("--global-secret-file", o.global_secret_file,
                 "Sign as a global subscription with this HS256 secret")
      ->type_name("FILE");
  cmd.add_option("--origin", o.origin, "Origin header (Tiledesk's WEBHOOK_ORIGIN)")
      ->capture_default_str();
  cmd.add_option("--timestamp", o.timestamp_ms, "Tiledesk's clock in milliseconds (default: now)")
      ->type_name("MS");
  cmd.add_option("--tamper", o.tamper,
                 "Produce a defect: wrong-secret, no-secret, bad-signature, alg-none, stale, "
                 "future, hook-mismatch, duplicate-key")
      ->check(CLI::IsMember({"none", "wrong-secret", "no-secret", "bad-signature", "alg-none",
                             "stale", "future", "hook-mismatch", "duplicate-key"}));
}

int run_sign(const SignOptions& options) {
  auto factory = NotificationFactory::create(options, options.curl_url);
  if (!factory) {
    std::cerr << "tdhook sign: " << factory.error().detail << "\n";
    return 2;
  }
  auto n = factory->make(options.timestamp_ms.value_or(now_ms()));
  if (!n) {
    std::cerr << "tdhook sign: " << n.error().detail << "\n";
    return 2;
  }
  if (options.curl_url.empty()) {
    std::cout << n->body << std::endl;
    return 0;
  }
  std::cout << "curl -sS -i -X POST " << shell_quote(options.curl_url) << " \\\n"
            << "  -H 'Content-Type: application/json' \\\n";
  if (!n->secret.empty())
    std::cout << "  -H " << shell_quote("x-hook-secret: " + n->secret) << " \\\n";
  std::cout << "  -H 'User-Agent: tiledesk-webhooks' \\\n"
            << "  -H " << shell_quote("Origin: " + options.origin) << " \\\n"
            << "  -H 'accept: application/json' \\\n"
            << "  -H 'Connection: close' \\\n"
            << "  --data-binary " << shell_quote(n->body) << std::endl;
  return 0;
}

void setup_sign(CLI::App& app) {
  auto options = std::make_shared<SignOptions>();
  auto* cmd = app.add_subcommand(
      "sign", "Print a notification body exactly as Tiledesk builds it (or a curl command)");
  add_notification_options(*cmd, *options);
  cmd->add_option("--curl", options->curl_url,
                  "Print a ready-to-run curl command that POSTs it to URL instead")
      ->type_name("URL");
  cmd->callback([options] {
    if (const int code = run_sign(*options); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tdhook::tools
