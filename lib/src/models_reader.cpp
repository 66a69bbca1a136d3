// FieldReader: the field-by-field reading shared by every model reader.
#include <cmath>
#include <limits>

#include "json_read.hpp"

namespace tdhook::detail {

namespace dom = simdjson::dom;

std::string_view json_type_name(dom::element_type type) noexcept {
  switch (type) {
    case dom::element_type::ARRAY:
      return "array";
    case dom::element_type::OBJECT:
      return "object";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE:
      return "number";
    case dom::element_type::STRING:
      return "string";
    case dom::element_type::BOOL:
      return "boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

Error not_an_object(const std::string& path, dom::element element) {
  return Error{ErrorCode::payload_mismatch,
               path + ": expected an object, got " + std::string(json_type_name(element.type()))};
}

namespace {

// JSON numbers written by JavaScript carry no integer type; accept integral doubles too.
bool to_int64(dom::element element, std::int64_t& out) {
  if (element.get_int64().get(out) == simdjson::SUCCESS) return true;
  double d = 0;
  if (element.get_double().get(d) != simdjson::SUCCESS) return false;
  constexpr double limit = 9223372036854775808.0;  // 2^63
  if (!std::isfinite(d) || std::trunc(d) != d || d < -limit || d >= limit) return false;
  out = static_cast<std::int64_t>(d);
  return true;
}

}  // namespace

FieldReader::FieldReader(dom::element element, std::string path) : path_(std::move(path)) {
  if (element.get_object().get(object_) != simdjson::SUCCESS)
    error_ = not_an_object(path_, element);
}

std::string FieldReader::child(std::string_view key) const {
  std::string out = path_;
  out += '.';
  out += key;
  return out;
}

void FieldReader::mismatch(std::string_view key, std::string_view expected, dom::element got) {
  if (error_) return;
  error_ = Error{ErrorCode::payload_mismatch, child(key) + ": " + std::string(expected) + ", got " +
                                                  std::string(json_type_name(got.type()))};
}

std::optional<dom::element> FieldReader::field(std::string_view key, bool required) {
  if (error_) return std::nullopt;
  dom::element value;
  if (object_.at_key(key).get(value) != simdjson::SUCCESS || value.is_null()) {
    if (required) {
      error_ = Error{ErrorCode::payload_mismatch, child(key) + ": required field is missing"};
    }
    return std::nullopt;
  }
  return value;
}

void FieldReader::required(std::string_view key, std::string& out) {
  auto e = field(key, true);
  if (!e) return;
  std::string_view s;
  if (e->get_string().get(s) != simdjson::SUCCESS) return mismatch(key, "expected a string", *e);
  out.assign(s);
}

void FieldReader::required(std::string_view key, std::int64_t& out) {
  auto e = field(key, true);
  if (e && !to_int64(*e, out)) mismatch(key, "expected an integer", *e);
}

void FieldReader::optional(std::string_view key, std::optional<std::string>& out) {
  auto e = field(key, false);
  if (!e) return;
  std::string_view s;
  if (e->get_string().get(s) != simdjson::SUCCESS) return mismatch(key, "expected a string", *e);
  out.emplace(s);
}

void FieldReader::optional(std::string_view key, std::optional<std::int64_t>& out) {
  auto e = field(key, false);
  if (!e) return;
  std::int64_t value = 0;
  if (!to_int64(*e, value)) return mismatch(key, "expected an integer", *e);
  out = value;
}

void FieldReader::optional(std::string_view key, std::optional<double>& out) {
  auto e = field(key, false);
  if (!e) return;
  double value = 0;
  if (e->get_double().get(value) != simdjson::SUCCESS)
    return mismatch(key, "expected a number", *e);
  out = value;
}

void FieldReader::optional(std::string_view key, std::optional<bool>& out) {
  auto e = field(key, false);
  if (!e) return;
  bool value = false;
  if (e->get_bool().get(value) != simdjson::SUCCESS) return mismatch(key, "expected a boolean", *e);
  out = value;
}

void FieldReader::defaulted(std::string_view key, std::string& out) {
  std::optional<std::string> value;
  optional(key, value);
  if (value) out = std::move(*value);
}

void FieldReader::defaulted(std::string_view key, std::int64_t& out) {
  std::optional<std::int64_t> value;
  optional(key, value);
  if (value) out = *value;
}

void FieldReader::defaulted(std::string_view key, bool& out) {
  std::optional<bool> value;
  optional(key, value);
  if (value) out = *value;
}

void FieldReader::raw(std::string_view key, std::string& out) {
  if (error_) return;
  dom::element value;
  if (object_.at_key(key).get(value) == simdjson::SUCCESS) out = simdjson::to_string(value);
}

void FieldReader::strings(std::string_view key, std::vector<std::string>& out) {
  auto e = field(key, false);
  if (!e) return;
  dom::array items;
  if (e->get_array().get(items) != simdjson::SUCCESS) return mismatch(key, "expected an array", *e);
  for (dom::element item : items) {
    std::string_view s;
    if (item.get_string().get(s) != simdjson::SUCCESS) {
      return mismatch(key, "expected an array of strings", item);
    }
    out.emplace_back(s);
  }
}

void FieldReader::name_of(std::string_view key, std::optional<std::string>& out) {
  auto e = field(key, false);
  if (!e) return;
  FieldReader inner(*e, child(key));
  inner.optional("name", out);
  if (inner.error_) error_ = std::move(inner.error_);
}

void FieldReader::names(std::string_view key, std::vector<std::string>& out) {
  auto e = field(key, false);
  if (!e) return;
  dom::array items;
  if (e->get_array().get(items) != simdjson::SUCCESS) return mismatch(key, "expected an array", *e);
  std::size_t index = 0;
  for (dom::element item : items) {
    FieldReader inner(item, child(key) + "[" + std::to_string(index++) + "]");
    std::string name;
    inner.required("name", name);
    if (inner.error_) {
      error_ = std::move(inner.error_);
      return;
    }
    out.push_back(std::move(name));
  }
}

void FieldReader::loose_bool(std::string_view key, std::optional<bool>& out) {
  auto e = field(key, false);
  if (!e) return;
  std::string_view s;
  if (e->get_string().get(s) == simdjson::SUCCESS && s.empty()) {
    out = false;
    return;
  }
  optional(key, out);
}

}  // namespace tdhook::detail
