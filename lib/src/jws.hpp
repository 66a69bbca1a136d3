#pragma once
// JWS compact serialization (RFC 7515) checks on OpenSSL 3 EVP: strict splitting and decoding,
// and signature verification with keys that are each bound to one algorithm.
#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tdhook/algorithm.hpp"
#include "tdhook/result.hpp"

namespace tdhook::detail {

// A verification key, prepared once. HMAC keys keep a keyed EVP_MAC_CTX that every verification
// duplicates (so the key schedule is computed once); public keys keep their EVP_PKEY.
class VerifyKey {
 public:
  static Result<std::unique_ptr<VerifyKey>> hmac(Algorithm alg, std::string_view secret,
                                                 bool global);
  static Result<std::unique_ptr<VerifyKey>> public_key(Algorithm alg, std::string_view pem);
  ~VerifyKey();
  VerifyKey(const VerifyKey&) = delete;
  VerifyKey& operator=(const VerifyKey&) = delete;

  Algorithm alg() const noexcept { return alg_; }
  bool global() const noexcept { return global_; }
  // Constant-time for HMAC (CRYPTO_memcmp); thread-safe.
  bool verify(std::string_view signing_input, std::string_view signature) const;

 private:
  VerifyKey(Algorithm alg, bool global);
  Algorithm alg_;
  bool global_;
  std::uint64_t serial_;  // unique per key for the life of the process (per-thread MAC copies)
  EVP_MAC_CTX* mac_ = nullptr;
  EVP_PKEY* pkey_ = nullptr;
};

// The three parts of a compact JWS, decoded. `signing_input` points into the token.
struct CompactJws {
  std::string header;     // decoded JSON text
  std::string claims;     // decoded JSON text
  std::string signature;  // decoded bytes
  std::string_view signing_input;
};
// Exactly three non-empty-header segments of strict base64url; nullopt otherwise.
std::optional<CompactJws> split_compact_jws(std::string_view token);
// The same into `out`, whose buffers keep their capacity from call to call (the verifier keeps
// one per thread): false where the above gives nullopt.
bool split_compact_jws_into(std::string_view token, CompactJws& out);

const EVP_MD* digest_of(Algorithm alg) noexcept;

}  // namespace tdhook::detail
