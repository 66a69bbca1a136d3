#include "jws.hpp"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base64.hpp"

namespace tdhook::detail {
namespace {

struct MdCtx {
  EVP_MD_CTX* p = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(p); }
};

bool is_hmac(Algorithm alg) { return alg == Algorithm::hs256; }
bool is_ec(Algorithm alg) { return alg == Algorithm::es256 || alg == Algorithm::es384; }
std::size_t ec_size(Algorithm alg) { return alg == Algorithm::es256 ? 32 : 48; }

EVP_PKEY* read_public_pem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return nullptr;
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (key == nullptr) {  // a certificate carries the public key too
    (void)BIO_reset(bio);
    if (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      key = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  return key;
}

// The JOSE form of an ECDSA signature is R||S, each of the curve's size; OpenSSL wants DER.
std::optional<std::vector<unsigned char>> jose_to_der(std::string_view sig, std::size_t n) {
  if (sig.size() != 2 * n) return std::nullopt;
  auto* bytes = reinterpret_cast<const unsigned char*>(sig.data());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(n), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + n, static_cast<int>(n), nullptr);
  ECDSA_SIG* es = ECDSA_SIG_new();
  if (r == nullptr || s == nullptr || es == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (len <= 0) return std::nullopt;
  std::vector<unsigned char> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

std::string group_name(EVP_PKEY* key) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1)
    return {};
  return std::string(name, len);
}

// Each thread keeps its own copy of the last few HMAC contexts it used, keyed by the key's
// serial number (never an address: a freed key's address may come back as another key).
// Re-initialising a copy reuses its prepared key, where duplicating the shared context per call
// allocated and freed one each time.
std::atomic<std::uint64_t> next_key_serial{1};

class ThreadMacCache {
 public:
  ThreadMacCache() = default;
  ThreadMacCache(const ThreadMacCache&) = delete;
  ThreadMacCache& operator=(const ThreadMacCache&) = delete;
  ~ThreadMacCache() {
    for (auto& slot : slots_) EVP_MAC_CTX_free(slot.ctx);
  }

  // A context keyed as `shared` (serial `serial`), ready for EVP_MAC_update; nullptr on failure.
  EVP_MAC_CTX* get(std::uint64_t serial, const EVP_MAC_CTX* shared) {
    for (auto& slot : slots_) {
      if (slot.serial == serial && slot.ctx != nullptr) {
        if (EVP_MAC_init(slot.ctx, nullptr, 0, nullptr) == 1) return slot.ctx;
        return nullptr;
      }
    }
    Slot& victim = slots_[next_victim_++ % slots_.size()];
    EVP_MAC_CTX_free(victim.ctx);
    victim.ctx = EVP_MAC_CTX_dup(shared);
    victim.serial = victim.ctx != nullptr ? serial : 0;
    return victim.ctx;
  }

 private:
  struct Slot {
    std::uint64_t serial = 0;
    EVP_MAC_CTX* ctx = nullptr;
  };
  std::array<Slot, 4> slots_{};
  std::size_t next_victim_ = 0;
};

}  // namespace

const EVP_MD* digest_of(Algorithm alg) noexcept {
  switch (alg) {
    case Algorithm::hs256:
    case Algorithm::rs256:
    case Algorithm::es256:
    case Algorithm::ps256:
      return EVP_sha256();
    case Algorithm::rs384:
    case Algorithm::es384:
      return EVP_sha384();
    case Algorithm::rs512:
      return EVP_sha512();
  }
  return nullptr;
}

VerifyKey::VerifyKey(Algorithm alg, bool global)
    : alg_(alg), global_(global), serial_(next_key_serial.fetch_add(1)) {}

VerifyKey::~VerifyKey() {
  EVP_MAC_CTX_free(mac_);
  EVP_PKEY_free(pkey_);
}

Result<std::unique_ptr<VerifyKey>> VerifyKey::hmac(Algorithm alg, std::string_view secret,
                                                   bool global) {
  if (!is_hmac(alg)) return Error{ErrorCode::invalid_config, "not an HMAC algorithm"};
  if (secret.empty()) return Error{ErrorCode::invalid_config, "empty secret"};
  std::unique_ptr<VerifyKey> key(new VerifyKey(alg, global));
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) return Error{ErrorCode::invalid_config, "OpenSSL has no HMAC"};
  key->mac_ = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (key->mac_ == nullptr ||
      EVP_MAC_init(key->mac_, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                   params) != 1)
    return Error{ErrorCode::invalid_config, "HMAC key could not be prepared"};
  return key;
}

Result<std::unique_ptr<VerifyKey>> VerifyKey::public_key(Algorithm alg, std::string_view pem) {
  std::string name(to_string(alg));
  if (is_hmac(alg))
    return Error{ErrorCode::invalid_config, name + " takes a secret, not a PEM key"};
  if (pem.empty()) return Error{ErrorCode::invalid_config, "empty key for " + name};
  std::unique_ptr<VerifyKey> key(new VerifyKey(alg, true));
  key->pkey_ = read_public_pem(pem);
  if (key->pkey_ == nullptr)
    return Error{ErrorCode::invalid_config, "the key for " + name + " is not a PEM public key"};
  if (is_ec(alg)) {
    std::string want = alg == Algorithm::es256 ? "prime256v1" : "secp384r1";
    std::string have = EVP_PKEY_is_a(key->pkey_, "EC") ? group_name(key->pkey_) : "";
    if (have != want && !(alg == Algorithm::es256 && have == "P-256") &&
        !(alg == Algorithm::es384 && have == "P-384"))
      return Error{ErrorCode::invalid_config,
                   "the key for " + name + " is not an EC key on the right curve"};
  } else if (!EVP_PKEY_is_a(key->pkey_, "RSA")) {
    return Error{ErrorCode::invalid_config, "the key for " + name + " is not an RSA key"};
  } else if (EVP_PKEY_get_bits(key->pkey_) < 2048) {
    return Error{ErrorCode::invalid_config,
                 "the RSA key for " + name + " is shorter than 2048 bits"};
  }
  return key;
}

bool VerifyKey::verify(std::string_view input, std::string_view signature) const {
  auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (mac_ != nullptr) {
    thread_local ThreadMacCache cache;
    EVP_MAC_CTX* ctx = cache.get(serial_, mac_);
    if (ctx == nullptr) return false;
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t out_len = 0;
    const bool ok = EVP_MAC_update(ctx, in, input.size()) == 1 &&
                    EVP_MAC_final(ctx, out, &out_len, sizeof out) == 1;
    return ok && out_len == signature.size() && CRYPTO_memcmp(out, signature.data(), out_len) == 0;
  }
  std::vector<unsigned char> der;
  auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  std::size_t sig_len = signature.size();
  if (is_ec(alg_)) {
    auto converted = jose_to_der(signature, ec_size(alg_));
    if (!converted) return false;
    der = std::move(*converted);
    sig = der.data();
    sig_len = der.size();
  }
  MdCtx md;
  EVP_PKEY_CTX* pctx = nullptr;
  if (md.p == nullptr || EVP_DigestVerifyInit(md.p, &pctx, digest_of(alg_), nullptr, pkey_) != 1)
    return false;
  if (alg_ == Algorithm::ps256 &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
    return false;
  return EVP_DigestVerify(md.p, sig, sig_len, in, input.size()) == 1;
}

std::optional<CompactJws> split_compact_jws(std::string_view token) {
  CompactJws jws;
  if (!split_compact_jws_into(token, jws)) return std::nullopt;
  return jws;
}

bool split_compact_jws_into(std::string_view token, CompactJws& out) {
  std::size_t d1 = token.find('.');
  if (d1 == std::string_view::npos) return false;
  std::size_t d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return false;
  if (!base64url_decode_into(token.substr(0, d1), out.header) ||
      !base64url_decode_into(token.substr(d1 + 1, d2 - d1 - 1), out.claims) ||
      !base64url_decode_into(token.substr(d2 + 1), out.signature) || out.header.empty() ||
      out.claims.empty()) {
    return false;
  }
  out.signing_input = token.substr(0, d2);
  return true;
}

}  // namespace tdhook::detail
