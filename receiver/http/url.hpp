#pragma once
// http:// and https:// URLs, the project's one reading of them: the receiver's http, https and
// forward sinks (delivery/sinks/http.cpp) and the tools' client (`tdhook send`, `tdhook sim`,
// tools/delivery.cpp). What a caller does with userinfo, a fragment or non-ASCII bytes is the
// caller's policy: the parser reports them and refuses only what no caller can send.

#include <string>
#include <string_view>

#include "tdhook/result.hpp"

namespace tdhook::receiver {

struct Url {
  std::string scheme;       // "http" or "https" (written in any case)
  bool tls = false;         // https
  std::string host;         // a name (lower case) or an address; IPv6 without its brackets
  int port = 0;             // given, or 80 / 443
  std::string path;         // path + query as written; "/" when none, "/?Q" when only a query
  std::string host_header;  // host[:port], the port omitted when the scheme's default
  bool has_userinfo = false;
  std::string user;      // percent-decoded (a malformed escape stays as written)
  std::string password;  // percent-decoded; empty without ":"
  bool has_fragment = false;
  std::string fragment;  // after "#", as written (never sent, never checked)
};

// Reads "SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?QUERY][#FRAGMENT]" with SCHEME http or
// https. HOST is letters, digits, '.', '-' and '_', or an IPv6 address in brackets; PORT is
// 1..65535. Spaces and control bytes are refused before the fragment; bytes from 0x80 up are
// kept. invalid_input with the reason (which never quotes the URL) otherwise.
Result<Url> parse_url(std::string_view url);

// Whether `host` (a name or an address, IPv6 with or without brackets) names the loopback
// interface: localhost, 127.0.0.0/8, ::1. The inspector binds only to these without a token.
bool is_loopback_host(std::string_view host) noexcept;

}  // namespace tdhook::receiver
