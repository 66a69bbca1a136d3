#include "http/url.hpp"

#include <algorithm>
#include <cctype>

namespace tdhook::receiver {
namespace {

constexpr auto npos = std::string_view::npos;

Error bad(std::string why) { return Error{ErrorCode::invalid_input, std::move(why)}; }

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// decodeURIComponent, leniently: a malformed escape stays as it is.
std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

bool host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
}

// HOST[:PORT] or [IPV6][:PORT] into out.host, out.port and out.host_header.
Status parse_host_port(std::string_view authority, Url& out) {
  std::string_view host = authority;
  std::string_view port;
  bool has_port = false;
  const bool v6 = authority.starts_with('[');
  if (v6) {
    const auto close = authority.find(']');
    if (close == npos) return bad("an IPv6 address needs its closing ]");
    host = authority.substr(1, close - 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return bad("expected :PORT after ]");
    if (!after.empty()) {
      has_port = true;
      port = after.substr(1);
    }
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != npos)
      return bad("not an IPv6 address between [ and ]");
  } else {
    if (const auto colon = authority.find(':'); colon != npos) {
      has_port = true;
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return bad("no host");
    if (!std::all_of(host.begin(), host.end(), host_char))
      return bad("a host name is letters, digits, '.', '-' and '_'");
  }
  const int default_port = out.tls ? 443 : 80;
  out.port = default_port;
  if (has_port) {
    if (port.empty()) return bad("an empty port after :");
    int value = 0;
    for (const char c : port) {
      if (c < '0' || c > '9') return bad("the port is not a number");
      value = std::min(value * 10 + (c - '0'), 100000);
    }
    if (value < 1 || value > 65535) return bad("the port is not within 1..65535");
    out.port = value;
  }
  out.host = lower(host);
  out.host_header = v6 ? "[" + out.host + "]" : out.host;
  if (out.port != default_port) out.host_header += ":" + std::to_string(out.port);
  return Ok{};
}

}  // namespace

Result<Url> parse_url(std::string_view url) {
  Url out;
  const auto sep = url.find("://");
  if (sep == npos || sep == 0) return bad("not an http:// or https:// URL");
  out.scheme = lower(url.substr(0, sep));
  if (!std::all_of(out.scheme.begin(), out.scheme.end(),
                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; })) {
    return bad("not an http:// or https:// URL");
  }
  if (out.scheme != "http" && out.scheme != "https") {
    return bad("unsupported URL scheme '" + out.scheme + "' (expected http or https)");
  }
  out.tls = out.scheme == "https";
  std::string_view rest = url.substr(sep + 3);
  if (const auto hash = rest.find('#'); hash != npos) {
    out.has_fragment = true;
    out.fragment = std::string(rest.substr(hash + 1));
    rest = rest.substr(0, hash);
  }
  for (const char c : rest) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("spaces and control characters must be percent-encoded");
  }
  const auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  const std::string_view path = path_start == npos ? "" : rest.substr(path_start);
  if (const auto at = authority.rfind('@'); at != npos) {
    const auto userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const auto colon = userinfo.find(':');
    out.has_userinfo = true;
    out.user = percent_decode(userinfo.substr(0, colon));
    if (colon != npos) out.password = percent_decode(userinfo.substr(colon + 1));
  }
  if (auto st = parse_host_port(authority, out); !st) return std::move(st).error();
  if (path.empty()) {
    out.path = "/";
  } else {
    out.path = path.starts_with('?') ? "/" + std::string(path) : std::string(path);
  }
  return out;
}

bool is_loopback_host(std::string_view host) noexcept {
  const auto lower_equals = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == y;
           });
  };
  if (lower_equals(host, "localhost") || host == "::1" || host == "[::1]") return true;
  return host.starts_with("127.") && host.find_first_not_of("0123456789.") == std::string::npos;
}

}  // namespace tdhook::receiver
