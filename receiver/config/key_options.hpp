#pragma once
// The secret and key options shared by tdhook-receiver and the tdhook tools:
//   --secret-file FILE        one subscription secret per line (repeatable); TDHOOK_SECRETS
//                             (comma-separated) adds more
//   --global-key ALG:PEMFILE  a public key for global subscriptions (repeatable)
//   --global-secret-file FILE an HS256 secret for global subscriptions
//   --mode header|token|both, --max-age SECONDS
// Secrets never come from a plain flag (visible in `ps`).

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tdhook/result.hpp"
#include "tdhook/verify.hpp"

namespace tdhook::receiver {

struct KeyOptions {
  std::vector<std::string> secret_files;
  std::vector<std::string> global_keys;  // "ALG:PEMFILE"
  std::vector<std::string> global_secret_files;
  std::string mode = "both";
  std::int64_t max_age_s = 300;
};

void add_key_options(CLI::App& app, KeyOptions& options);

// Reads the files and TDHOOK_SECRETS into VerifierOptions (blank lines and surrounding
// whitespace ignored). invalid_config with a clear detail (never the secret) on unreadable
// files, bad ALG, empty secrets. Does not require a secret: the caller decides.
Result<VerifierOptions> make_verifier_options(const KeyOptions& options);

}  // namespace tdhook::receiver
