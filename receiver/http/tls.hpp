#pragma once
// HTTPS on the receiver's own event loop (http_loop.hpp). A TlsContext is one certificate chain
// and key with the receiver's protocol settings (an OpenSSL SSL_CTX), immutable once loaded;
// `accept` makes the server side of one connection over a non-blocking socket, a Transport that
// the loop reads and writes like plain TCP (the handshake happens inside the first reads).
//
// Defaults: TLS 1.2 or later (`--tls-min-version 1.3` for 1.3 only); for TLS 1.2 only ECDHE key
// exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305); TLS 1.3 with OpenSSL's defaults; no
// renegotiation, no compression; ALPN selects http/1.1 and refuses a client that offers only
// other protocols.
//
// SIGHUP loads a new context (intake/live.hpp): connections accepted afterwards use it, those
// already open finish with theirs (each connection holds a reference on its SSL_CTX). Thread-safe:
// a context is shared by every loop thread; a transport belongs to one connection.

#include <memory>
#include <string>
#include <string_view>

#include "http/transport.hpp"
#include "tdhook/result.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace tdhook::receiver {

enum class TlsVersion { tls1_2, tls1_3 };

// "1.2" or "1.3"; invalid_config otherwise.
Result<TlsVersion> parse_tls_version(std::string_view text);
std::string_view to_string(TlsVersion version) noexcept;  // "1.2", "1.3"

struct TlsSettings {
  std::string cert_file;  // PEM: the certificate, then its chain
  std::string key_file;   // PEM, not encrypted
  TlsVersion min_version = TlsVersion::tls1_2;
};

class TlsContext {
 public:
  // Loads the files and checks that the key belongs to the certificate. invalid_config naming the
  // file and OpenSSL's reason when they do not load (never any key material).
  static Result<std::shared_ptr<const TlsContext>> load(const TlsSettings& settings);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // The server side of a TLS connection on `fd` (connected, non-blocking; not owned); null when
  // OpenSSL cannot make one (out of memory).
  std::unique_ptr<Transport> accept(int fd) const;

  // For logs: the certificate's subject, expiry and SHA-256 fingerprint.
  const std::string& subject() const noexcept { return subject_; }
  const std::string& not_after() const noexcept { return not_after_; }
  const std::string& fingerprint() const noexcept { return fingerprint_; }
  TlsVersion min_version() const noexcept { return min_version_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) noexcept : ctx_(ctx) {}
  SSL_CTX* ctx_;
  std::string subject_, not_after_, fingerprint_;
  TlsVersion min_version_ = TlsVersion::tls1_2;
};

}  // namespace tdhook::receiver
