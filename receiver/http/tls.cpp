#include "http/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace tdhook::receiver {
namespace {

// TLS 1.2: ECDHE key exchange and AEAD ciphers only (Mozilla's "intermediate" list). TLS 1.3
// keeps OpenSSL's default suites, which are all AEAD.
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The largest plaintext of one TLS record: a read with at least this much room takes a whole
// record, so nothing stays decrypted inside OpenSSL where epoll cannot see it.
constexpr std::size_t max_record = 16384;

// OpenSSL's queued errors as one line ("" when none), and the queue emptied.
std::string openssl_errors() {
  std::string text;
  while (const auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

// An encrypted key would make OpenSSL ask for its passphrase on the terminal: refuse instead.
int no_passphrase(char*, int, int, void*) { return 0; }

// ALPN: http/1.1 or nothing. A client that offers protocols, none of them http/1.1 (h2 only), is
// refused with no_application_protocol, as RFC 7301 says.
int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                  unsigned int inlen, void*) {
  static const unsigned char ours[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

class TlsTransport final : public Transport {
 public:
  TlsTransport(SSL* ssl, int fd) noexcept : ssl_(ssl), fd_(fd) {}
  ~TlsTransport() override { SSL_free(ssl_); }
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  IoResult read(char* buf, std::size_t size) override {
    std::size_t got = 0;
    // Record by record while a whole one fits; what stays in the socket shows in epoll again.
    while (got == 0 || size - got >= max_record) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buf + got, clamp(size - got));
      if (n > 0) {
        got += static_cast<std::size_t>(n);
        continue;
      }
      const auto status = failure(n);
      // Bytes first, and whether the connection ended after them: a close_notify already read
      // from the socket does not make it readable again.
      if (got == 0) return IoResult{status, 0, false};
      return IoResult{IoStatus::done, got,
                      status == IoStatus::closed || status == IoStatus::failed};
    }
    return {IoStatus::done, got};
  }

  IoResult write(const char* data, std::size_t size) override {
    ERR_clear_error();
    const int n = SSL_write(ssl_, data, clamp(size));
    if (n > 0) return {IoStatus::done, static_cast<std::size_t>(n)};
    return {failure(n), 0};
  }

  void shutdown_write() override {
    close_notify();
    ::shutdown(fd_, SHUT_WR);
  }

  void close_notify() override {
    if (broken_ || notified_ || SSL_is_init_finished(ssl_) != 1) return;
    notified_ = true;
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // non-blocking: sends what the socket takes, never waits
    ERR_clear_error();
  }

 private:
  static int clamp(std::size_t size) noexcept {
    return static_cast<int>(std::min<std::size_t>(size, INT_MAX));
  }

  IoStatus failure(int ret) {
    const int error = SSL_get_error(ssl_, ret);
    switch (error) {
      case SSL_ERROR_WANT_READ:
        return IoStatus::want_read;
      case SSL_ERROR_WANT_WRITE:
        return IoStatus::want_write;
      case SSL_ERROR_ZERO_RETURN:
        return IoStatus::closed;
      default:
        // A failed handshake (wrong version, no shared cipher, not TLS at all), a reset: no
        // close_notify on a connection OpenSSL gave up on. A handshake's reason is kept for the
        // loop's report (counted, and logged at a bounded rate by the receiver).
        broken_ = true;
        if (error == SSL_ERROR_SSL && SSL_is_init_finished(ssl_) != 1) {
          // A protocol failure, not a reset or an EOF (a port probe is no failure).
          const unsigned long code = ERR_peek_last_error();
          const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
          handshake_failure_ = reason != nullptr ? reason : "protocol error";
        }
        ERR_clear_error();
        return IoStatus::failed;
    }
  }

  std::string_view handshake_failure() const override { return handshake_failure_; }

  SSL* ssl_;
  int fd_;
  std::string_view handshake_failure_;  // OpenSSL's static text
  bool broken_ = false;
  bool notified_ = false;
};

Status configure(SSL_CTX* ctx, const TlsSettings& settings) {
  const int min = settings.min_version == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
      SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
    return Error{ErrorCode::invalid_config, "TLS settings refused: " + openssl_errors()};
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Partial writes and a buffer that may move between retries: the loop writes from its own
  // output string. Buffers released while a connection is idle: ten thousand idle keep-alive
  // connections do not hold 34 KiB each.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ctx, select_http11, nullptr);
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_file.c_str()) != 1) {
    return Error{ErrorCode::invalid_config,
                 "cannot load the TLS certificate " + settings.cert_file + ": " + openssl_errors()};
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, settings.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Error{ErrorCode::invalid_config, "cannot load the TLS key " + settings.key_file +
                                                " (PEM, not encrypted): " + openssl_errors()};
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Error{ErrorCode::invalid_config, "the TLS key " + settings.key_file +
                                                " does not belong to the certificate " +
                                                settings.cert_file};
  }
  return Ok{};
}

}  // namespace

Result<TlsVersion> parse_tls_version(std::string_view text) {
  if (text == "1.2") return TlsVersion::tls1_2;
  if (text == "1.3") return TlsVersion::tls1_3;
  return Error{ErrorCode::invalid_config,
               "bad TLS version '" + std::string(text) + "' (expected 1.2 or 1.3)"};
}

std::string_view to_string(TlsVersion version) noexcept {
  return version == TlsVersion::tls1_3 ? "1.3" : "1.2";
}

Result<std::shared_ptr<const TlsContext>> TlsContext::load(const TlsSettings& settings) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return Error{ErrorCode::invalid_config, "cannot make a TLS context: " + openssl_errors()};
  }
  std::shared_ptr<TlsContext> made(new TlsContext(ctx));
  if (auto st = configure(ctx, settings); !st) return std::move(st).error();
  made->min_version_ = settings.min_version;
  if (X509* cert = SSL_CTX_get0_certificate(ctx)) {
    char name[512] = {};
    X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
    made->subject_ = name;
    if (BIO* bio = BIO_new(BIO_s_mem())) {
      ASN1_TIME_print(bio, X509_get0_notAfter(cert));
      made->not_after_ = bio_text(bio);
      BIO_free(bio);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (X509_digest(cert, EVP_sha256(), digest, &length) == 1) {
      static const char hex[] = "0123456789abcdef";
      for (unsigned int i = 0; i < length; ++i) {
        if (i > 0) made->fingerprint_ += ':';
        made->fingerprint_ += hex[digest[i] >> 4];
        made->fingerprint_ += hex[digest[i] & 15];
      }
    }
  }
  return std::shared_ptr<const TlsContext>(std::move(made));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<Transport> TlsContext::accept(int fd) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return std::make_unique<TlsTransport>(ssl, fd);
}

}  // namespace tdhook::receiver
