#include "jws_sign.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <climits>
#include <cstddef>
#include <memory>
#include <vector>

namespace tdhook::detail {
namespace {

enum class Family { hmac, rsa_pkcs1, rsa_pss, ecdsa };

struct AlgSpec {
  const char* name;
  Family family;
  const EVP_MD* (*digest)();
  int curve_nid;         // ECDSA only
  std::size_t ec_width;  // bytes of R (and of S) in the JOSE signature
};

AlgSpec spec_of(Algorithm alg) noexcept {
  switch (alg) {
    case Algorithm::hs256:
      return {"HS256", Family::hmac, EVP_sha256, 0, 0};
    case Algorithm::rs256:
      return {"RS256", Family::rsa_pkcs1, EVP_sha256, 0, 0};
    case Algorithm::rs384:
      return {"RS384", Family::rsa_pkcs1, EVP_sha384, 0, 0};
    case Algorithm::rs512:
      return {"RS512", Family::rsa_pkcs1, EVP_sha512, 0, 0};
    case Algorithm::ps256:
      return {"PS256", Family::rsa_pss, EVP_sha256, 0, 0};
    case Algorithm::es256:
      return {"ES256", Family::ecdsa, EVP_sha256, NID_X9_62_prime256v1, 32};
    case Algorithm::es384:
      return {"ES384", Family::ecdsa, EVP_sha384, NID_secp384r1, 48};
  }
  return {"HS256", Family::hmac, EVP_sha256, 0, 0};
}

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Leaves OpenSSL's thread-local error queue clean, so that a failure here cannot be reported
// later by unrelated code on the same thread.
Error config_error(std::string detail) {
  ERR_clear_error();
  return Error{ErrorCode::invalid_config, std::move(detail)};
}

// Refuses encrypted PEMs instead of letting OpenSSL prompt on the terminal.
int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

Result<std::string> sign_hmac(const AlgSpec& spec, std::string_view secret,
                              std::string_view input) {
  if (secret.size() > INT_MAX) return config_error("the HMAC secret is too long");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(spec.digest(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
           &mac_len) == nullptr) {
    return config_error(std::string("cannot compute the ") + spec.name + " HMAC");
  }
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

Result<PkeyPtr> read_private_key(const AlgSpec& spec, std::string_view pem) {
  if (pem.size() > INT_MAX) return config_error("the private key is too long");
  const std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return config_error("out of memory reading the private key");
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!pkey) {
    return config_error(std::string("the key for ") + spec.name +
                        " is not an unencrypted PEM private key");
  }
  const int type = EVP_PKEY_get_base_id(pkey.get());
  const bool fits = spec.family == Family::ecdsa ? type == EVP_PKEY_EC
                    : spec.family == Family::rsa_pss
                        ? type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS
                        : type == EVP_PKEY_RSA;
  if (!fits) return config_error(std::string("the private key does not fit ") + spec.name);
  if (spec.family == Family::ecdsa) {
    char group[64] = {};
    std::size_t group_len = 0;
    if (EVP_PKEY_get_group_name(pkey.get(), group, sizeof group, &group_len) != 1 ||
        OBJ_txt2nid(group) != spec.curve_nid) {
      return config_error(std::string("the EC private key is not on the curve of ") + spec.name);
    }
  }
  return pkey;
}

// ECDSA gives DER (SEQUENCE of two INTEGERs); JWS wants R||S, each left-padded to the curve size.
Result<std::string> der_to_jose(const AlgSpec& spec, const std::vector<unsigned char>& der) {
  const unsigned char* p = der.data();
  const std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return config_error(std::string("cannot decode the ") + spec.name + " signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(spec.ec_width * 2, '\0');
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  const int width = static_cast<int>(spec.ec_width);
  if (BN_bn2binpad(r, dst, width) != width || BN_bn2binpad(s, dst + width, width) != width) {
    return config_error(std::string("cannot encode the ") + spec.name + " signature");
  }
  return out;
}

Result<std::string> sign_with_pkey(const AlgSpec& spec, std::string_view pem,
                                   std::string_view input) {
  auto pkey = read_private_key(spec, pem);
  if (!pkey) return std::move(pkey).error();
  const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, spec.digest(), nullptr, pkey->get()) != 1) {
    return config_error(std::string("the private key cannot sign ") + spec.name);
  }
  if (spec.family == Family::rsa_pss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return config_error("the private key cannot sign PS256");
  }
  const auto* data = reinterpret_cast<const unsigned char*>(input.data());
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, data, input.size()) != 1) {
    return config_error(std::string("the private key cannot sign ") + spec.name);
  }
  std::vector<unsigned char> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data, input.size()) != 1) {
    return config_error(std::string("signing with ") + spec.name + " failed");
  }
  sig.resize(len);
  if (spec.family == Family::ecdsa) return der_to_jose(spec, sig);
  return std::string(sig.begin(), sig.end());
}

}  // namespace

Result<std::string> jws_sign(const SigningKey& key, std::string_view signing_input) {
  const AlgSpec spec = spec_of(key.alg);
  if (key.material.empty()) {
    return Error{ErrorCode::invalid_config, std::string("the ") + spec.name + " key is empty"};
  }
  if (spec.family == Family::hmac) return sign_hmac(spec, key.material, signing_input);
  return sign_with_pkey(spec, key.material, signing_input);
}

std::string_view jws_alg_name(Algorithm alg) noexcept { return spec_of(alg).name; }

}  // namespace tdhook::detail
