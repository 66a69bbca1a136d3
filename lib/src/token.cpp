#include "tdhook/token.hpp"

#include <array>
#include <cstddef>

#include "base64.hpp"

namespace tdhook {

std::optional<std::string> base64url_decode(std::string_view text) {
  return detail::base64url_decode(text);
}

Result<DecodedToken> decode_token(std::string_view token) {
  std::array<std::string_view, 3> parts;
  std::size_t count = 0, start = 0;
  for (;;) {
    const std::size_t dot = token.find('.', start);
    if (count < parts.size()) parts[count] = token.substr(start, dot - start);
    ++count;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count != parts.size()) {
    return Error{ErrorCode::token_malformed,
                 "the token is not three parts separated by dots: it has " + std::to_string(count)};
  }
  static constexpr std::array<const char*, 3> kNames = {"header (part 1)", "claims (part 2)",
                                                        "signature (part 3)"};
  DecodedToken out;
  std::array<std::string*, 3> into = {&out.header, &out.claims, &out.signature};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (!detail::base64url_decode_into(parts[i], *into[i])) {
      return Error{ErrorCode::token_malformed,
                   std::string("the token's ") + kNames[i] + " is not base64url"};
    }
  }
  return out;
}

}  // namespace tdhook
