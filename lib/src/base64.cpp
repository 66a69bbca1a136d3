#include "base64.hpp"

#include <array>
#include <cstdint>

namespace tdhook::detail {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> make_reverse() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return table;
}
constexpr auto kReverse = make_reverse();

// The sextet of each character already shifted to its place in a 4-character group, one table
// per place; characters outside the alphabet have the top bit set in every table, so one test of
// the OR of a group's four entries finds them.
constexpr std::uint32_t kInvalid = 0x80000000u;
constexpr std::array<std::uint32_t, 256> make_placed(int shift) {
  std::array<std::uint32_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    const int v = kReverse[static_cast<std::size_t>(c)];
    table[static_cast<std::size_t>(c)] = v < 0 ? kInvalid : static_cast<std::uint32_t>(v) << shift;
  }
  return table;
}
constexpr auto kPlaced0 = make_placed(18);
constexpr auto kPlaced1 = make_placed(12);
constexpr auto kPlaced2 = make_placed(6);
constexpr auto kPlaced3 = make_placed(0);

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = byte(i) << 16;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
  } else if (rest == 2) {
    std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string out;
  if (!base64url_decode_into(text, out)) return std::nullopt;
  return out;
}

bool base64url_decode_into(std::string_view text, std::string& out) {
  const std::size_t rest = text.size() % 4;
  if (rest == 1) return false;
  out.resize(text.size() / 4 * 3 + (rest == 0 ? 0 : rest - 1));
  auto sextet = [&](std::size_t i) {
    return static_cast<std::int32_t>(kReverse[static_cast<unsigned char>(text[i])]);
  };
  std::size_t o = 0, i = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  char* dst = out.data();
  for (; i + 4 <= text.size(); i += 4) {
    const std::uint32_t v =
        kPlaced0[in[i]] | kPlaced1[in[i + 1]] | kPlaced2[in[i + 2]] | kPlaced3[in[i + 3]];
    if ((v & kInvalid) != 0) return false;
    dst[o++] = static_cast<char>(v >> 16);
    dst[o++] = static_cast<char>(v >> 8 & 0xff);
    dst[o++] = static_cast<char>(v & 0xff);
  }
  if (rest >= 2) {
    std::int32_t a = sextet(i), b = sextet(i + 1), c = rest == 3 ? sextet(i + 2) : 0;
    if ((a | b | c) < 0) return false;
    // Canonical encoding only: the unused low bits of the last character must be zero.
    if (rest == 2 && (b & 0x0f) != 0) return false;
    if (rest == 3 && (c & 0x03) != 0) return false;
    std::uint32_t v = static_cast<std::uint32_t>(a << 18 | b << 12 | c << 6);
    out[o++] = static_cast<char>(v >> 16);
    if (rest == 3) out[o++] = static_cast<char>(v >> 8 & 0xff);
  }
  return true;
}

}  // namespace tdhook::detail
