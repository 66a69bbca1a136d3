// GCC 12 at -O2 reports a potential null dereference inside CLI11 2.1's inlined string
// splitting (a false positive in the library's header, not in this file).
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "config/key_options.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

namespace tdhook::receiver {
namespace {

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n\f\v";
  const auto first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(kSpace);
  return text.substr(first, last - first + 1);
}

Result<std::string> read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::invalid_config, "cannot read " + std::string(what) + " " + path};
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return Error{ErrorCode::invalid_config, "cannot read " + std::string(what) + " " + path};
  }
  return text.str();
}

// One secret per line; blank lines and surrounding whitespace do not count. A file without any
// secret is almost certainly a mistake (an empty mount, a wrong path), so it is an error.
Result<std::vector<std::string>> read_secret_lines(const std::string& path, std::string_view what) {
  auto text = read_file(path, what);
  if (!text) return std::move(text).error();
  std::vector<std::string> secrets;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    const auto secret = trim(line);
    if (!secret.empty()) secrets.emplace_back(secret);
  }
  if (secrets.empty()) {
    return Error{ErrorCode::invalid_config, std::string(what) + " " + path + " holds no secret"};
  }
  return secrets;
}

Status add_env_secrets(std::vector<std::string>& secrets) {
  const char* env = std::getenv("TDHOOK_SECRETS");
  if (env == nullptr || trim(env).empty()) return Ok{};
  std::string_view rest(env);
  while (true) {
    const auto comma = rest.find(',');
    const auto item = trim(rest.substr(0, comma));
    if (item.empty()) {
      return Error{ErrorCode::invalid_config, "TDHOOK_SECRETS has an empty entry"};
    }
    secrets.emplace_back(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return Ok{};
}

// A key that does not load names its file: Verifier::create, given every key at once, can only
// number them ("global key #2"). Each is tried alone first, with its file in the message.
Status check_global_key(const GlobalKey& key, const std::string& origin) {
  VerifierOptions one;
  one.mode = VerifyMode::token_only;
  one.global_keys.push_back(key);
  auto made = Verifier::create(std::move(one));
  if (made) return Ok{};
  std::string detail = made.error().detail;
  constexpr std::string_view kNumbered = "global key #1: ";
  if (detail.starts_with(kNumbered)) detail.erase(0, kNumbered.size());
  return Error{ErrorCode::invalid_config, origin + ": " + detail};
}

Result<GlobalKey> read_global_key(const std::string& spec) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
    return Error{
        ErrorCode::invalid_config,
        "--global-key expects ALG:PEMFILE (e.g. RS256:/etc/tdhook/global.pub), got '" + spec + "'"};
  }
  const std::string alg_name = spec.substr(0, colon);
  const std::string path = spec.substr(colon + 1);
  const auto alg = algorithm_from_string(alg_name);
  if (!alg) {
    return Error{ErrorCode::invalid_config,
                 "--global-key: unknown algorithm '" + alg_name +
                     "' (one of HS256, RS256, RS384, RS512, ES256, ES384, PS256)"};
  }
  if (*alg == Algorithm::hs256) {
    // An HS256 "key" is a secret: same file format as --global-secret-file.
    auto lines = read_secret_lines(path, "global key file");
    if (!lines) return std::move(lines).error();
    return GlobalKey{*alg, lines->front()};
  }
  auto pem = read_file(path, "global key file");
  if (!pem) return std::move(pem).error();
  if (trim(*pem).empty()) {
    return Error{ErrorCode::invalid_config, "global key file " + path + " is empty"};
  }
  GlobalKey key{*alg, std::move(*pem)};
  if (auto checked = check_global_key(key, "global key " + spec); !checked) {
    return std::move(checked).error();
  }
  return key;
}

}  // namespace

void add_key_options(CLI::App& app, KeyOptions& options) {
  app.add_option("--secret-file", options.secret_files,
                 "File with one subscription secret per line (repeatable); TDHOOK_SECRETS "
                 "(comma-separated) adds more")
      ->type_name("FILE");
  app.add_option("--global-key", options.global_keys,
                 "ALG:PEMFILE, a public key for tokens of global subscriptions (repeatable); ALG "
                 "is RS256, RS384, RS512, ES256, ES384, PS256 (or HS256 with a secret file)")
      ->type_name("ALG:FILE");
  app.add_option("--global-secret-file", options.global_secret_files,
                 "File with the HS256 secret of global subscriptions (repeatable)")
      ->type_name("FILE");
  app.add_option("--mode", options.mode,
                 "What to check: both (x-hook-secret and token), header, token")
      ->check(CLI::IsMember({"both", "header", "token"}))
      ->capture_default_str();
  app.add_option("--max-age", options.max_age_s,
                 "Maximum age in seconds of the token's iat and the body's timestamp, both "
                 "directions (0 = no check)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

Result<VerifierOptions> make_verifier_options(const KeyOptions& options) {
  VerifierOptions out;
  const auto mode = verify_mode_from_string(options.mode);
  if (!mode) {
    return Error{ErrorCode::invalid_config,
                 "unknown mode '" + options.mode + "' (one of both, header, token)"};
  }
  out.mode = *mode;
  if (options.max_age_s < 0) {
    return Error{ErrorCode::invalid_config, "--max-age must not be negative"};
  }
  out.max_age = std::chrono::seconds(options.max_age_s);

  for (const auto& path : options.secret_files) {
    auto secrets = read_secret_lines(path, "secret file");
    if (!secrets) return std::move(secrets).error();
    for (auto& s : *secrets) out.secrets.push_back(std::move(s));
  }
  if (auto env = add_env_secrets(out.secrets); !env) return std::move(env).error();

  for (const auto& spec : options.global_keys) {
    auto key = read_global_key(spec);
    if (!key) return std::move(key).error();
    out.global_keys.push_back(std::move(*key));
  }
  for (const auto& path : options.global_secret_files) {
    auto secrets = read_secret_lines(path, "global secret file");
    if (!secrets) return std::move(secrets).error();
    for (auto& s : *secrets) out.global_keys.push_back(GlobalKey{Algorithm::hs256, std::move(s)});
  }
  return out;
}

}  // namespace tdhook::receiver
