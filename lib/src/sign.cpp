#include "tdhook/sign.hpp"

#include <string>
#include <utility>

#include "base64.hpp"
#include "js_json.hpp"
#include "jws_sign.hpp"

namespace tdhook {
namespace {

using detail::JsMember;
using detail::JsValue;

constexpr std::string_view kIssuer = "https://tiledesk.com";
constexpr std::string_view kSubject = "subscription";
constexpr std::string_view kAudiencePrefix = "https://tiledesk.com/subscriptions/";
constexpr std::string_view kGlobalAudience = "https://tiledesk.com";

Error input_error(std::string detail) { return Error{ErrorCode::invalid_input, std::move(detail)}; }

Error prefixed(Error error, std::string_view what) {
  error.detail.insert(0, std::string(what) + ": ");
  return error;
}

// Refuses what jsonwebtoken.sign refuses for an object payload, plus what we need (_id).
Status check_hook(const JsValue& hook) {
  if (hook.kind != JsValue::Kind::object) return input_error("the hook is not a JSON object");
  // Object.assign({}, hook) would feed this member to the prototype setter instead of copying
  // it, so Tiledesk's claims and ours could not agree.
  if (hook.find("__proto__") != nullptr) return input_error("the hook has a __proto__ member");
  const JsValue* id = hook.find("_id");
  if (id == nullptr || id->kind != JsValue::Kind::string) {
    return input_error("the hook has no string _id");
  }
  for (const char* name : {"iat", "exp", "nbf"}) {
    const JsValue* claim = hook.find(name);
    if (claim != nullptr && claim->kind != JsValue::Kind::number) {
      return input_error(std::string("the hook's ") + name + " is not a number");
    }
  }
  for (const char* name : {"aud", "iss", "sub"}) {
    if (hook.find(name) != nullptr) {
      return input_error(std::string("the hook already has ") + name +
                         ", which jsonwebtoken refuses to overwrite");
    }
  }
  return Ok{};
}

// The claims jsonwebtoken 8.5.1 builds from sign(hook, key, {audience, issuer, subject}).
Result<JsValue> make_claims(JsValue hook, std::int64_t iat_seconds, bool global) {
  if (auto status = check_hook(hook); !status) return std::move(status).error();
  const auto iat = JsValue::make_number(static_cast<double>(iat_seconds));
  // jsonwebtoken takes `payload.iat || now`: a numeric iat stays where it is, unless it is 0.
  if (JsValue* existing = hook.find("iat")) {
    if (existing->number == 0.0) *existing = iat;
  } else {
    hook.members.push_back(JsMember{"\"iat\"", iat});
  }
  JsValue aud;
  aud.kind = JsValue::Kind::string;
  if (global) {
    aud.string_json = detail::js_quote(kGlobalAudience);
  } else {
    // The prefix needs no escaping, so the printed _id (quotes aside) can follow it as is.
    const std::string& id_json = hook.find("_id")->string_json;
    aud.string_json = "\"" + std::string(kAudiencePrefix) + id_json.substr(1);
  }
  hook.members.push_back(JsMember{"\"aud\"", std::move(aud)});
  hook.members.push_back(JsMember{"\"iss\"", JsValue::make_string(kIssuer)});
  hook.members.push_back(JsMember{"\"sub\"", JsValue::make_string(kSubject)});
  return hook;
}

Result<std::string> sign_claims(const JsValue& claims, const SigningKey& key) {
  // jws prints the header with JSON.stringify of {alg, typ, kid: undefined}.
  const std::string header =
      std::string(R"({"alg":")") + std::string(detail::jws_alg_name(key.alg)) + R"(","typ":"JWT"})";
  std::string token = detail::base64url_encode(header);
  token += '.';
  token += detail::base64url_encode(detail::stringify_js_json(claims));
  auto signature = detail::jws_sign(key, token);
  if (!signature) return std::move(signature).error();
  token += '.';
  token += detail::base64url_encode(*signature);
  return token;
}

Result<std::string> sign_parsed_hook(JsValue hook, std::int64_t iat_seconds, const SigningKey& key,
                                     bool global) {
  if (key.material.empty()) {
    return Error{ErrorCode::invalid_config, "the signing key is empty"};
  }
  auto claims = make_claims(std::move(hook), iat_seconds, global);
  if (!claims) return std::move(claims).error();
  return sign_claims(*claims, key);
}

// Math.floor(ms / 1000), also for times before 1970.
std::int64_t floor_seconds(std::int64_t ms) {
  const std::int64_t q = ms / 1000;
  return (ms % 1000 != 0 && ms < 0) ? q - 1 : q;
}

}  // namespace

Result<std::string> to_js_json(std::string_view json) {
  auto value = detail::parse_js_json(json);
  if (!value) return std::move(value).error();
  return detail::stringify_js_json(*value);
}

Result<std::string> sign_token(std::string_view hook_json, std::int64_t iat_seconds,
                               const SigningKey& key, bool global) {
  auto hook = detail::parse_js_json(hook_json);
  if (!hook) return prefixed(std::move(hook).error(), "hook");
  return sign_parsed_hook(std::move(*hook), iat_seconds, key, global);
}

Result<std::string> build_notification(const NotificationInput& input, const SigningKey& key) {
  auto payload = detail::parse_js_json(input.payload_json);
  if (!payload) return prefixed(std::move(payload).error(), "payload");
  auto hook = detail::parse_js_json(input.hook_json);
  if (!hook) return prefixed(std::move(hook).error(), "hook");
  const std::string hook_text = detail::stringify_js_json(*hook);
  auto token =
      sign_parsed_hook(std::move(*hook), floor_seconds(input.timestamp_ms), key, input.global);
  if (!token) return std::move(token).error();

  // Tiledesk's key order: timestamp, payload, hook, token.
  std::string body = "{\"timestamp\":";
  body += detail::js_number_to_string(static_cast<double>(input.timestamp_ms));
  body += ",\"payload\":";
  detail::append_js_json(*payload, body);
  body += ",\"hook\":";
  body += hook_text;
  body += ",\"token\":\"";
  body += *token;
  body += "\"}";
  return body;
}

}  // namespace tdhook
