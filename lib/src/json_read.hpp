#pragma once
// Reading typed models out of simdjson DOM objects (private to the library).
//
// A FieldReader walks one JSON object and fills a struct's members. The first problem it meets is
// kept, with the dotted path of the field ("request.lead.email: expected a string, got number"),
// and every later call is a no-op, so a model reader is a flat list of calls followed by one
// check of error(). Absent and null fields leave optional members empty and defaulted members
// untouched: Tiledesk omits absent fields but may send an explicit null (§6, §9).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <simdjson.h>

#include "tdhook/models.hpp"
#include "tdhook/result.hpp"

namespace tdhook::detail {

// "string", "object", ... for error details.
std::string_view json_type_name(simdjson::dom::element_type type) noexcept;

// One reader per model, filling `out` from `element` (which must be an object); `path` names the
// element in error details. Each returns an Error{payload_mismatch} on the first misfit.
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path, User& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path, Lead& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Presence& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                FaqKb& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path, Faq& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                ProjectUser& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Group& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Department& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Project& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Request& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Message& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                CustomEvent& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                Operator& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                OperatorSelect& out);
std::optional<Error> read_model(simdjson::dom::element element, const std::string& path,
                                RequestClose& out);

class FieldReader {
 public:
  // Fails (error()) unless `element` is an object.
  FieldReader(simdjson::dom::element element, std::string path);

  const std::optional<Error>& error() const noexcept { return error_; }
  bool failed() const noexcept { return error_.has_value(); }

  // Required fields: absent or null is an error.
  void required(std::string_view key, std::string& out);
  void required(std::string_view key, std::int64_t& out);

  // Optional fields: absent or null leaves `out` empty.
  void optional(std::string_view key, std::optional<std::string>& out);
  void optional(std::string_view key, std::optional<std::int64_t>& out);
  void optional(std::string_view key, std::optional<double>& out);
  void optional(std::string_view key, std::optional<bool>& out);

  // Fields with a schema default: absent or null leaves `out` as it is.
  void defaulted(std::string_view key, std::string& out);
  void defaulted(std::string_view key, std::int64_t& out);
  void defaulted(std::string_view key, bool& out);

  // Any JSON value as compact text; "" when absent, "null" when null.
  void raw(std::string_view key, std::string& out);
  // An array of strings; absent or null leaves it empty.
  void strings(std::string_view key, std::vector<std::string>& out);
  // `{"name": "..."}` objects (channel, channelOutbound): the name.
  void name_of(std::string_view key, std::optional<std::string>& out);
  // An array of `{"name": "..."}` objects (project channels): the names.
  void names(std::string_view key, std::vector<std::string>& out);
  // Tiledesk sends "" for some booleans (isActiveSubscription): read as false.
  void loose_bool(std::string_view key, std::optional<bool>& out);

  // A nested model; required() fails when absent or null.
  template <class T>
  void required_model(std::string_view key, T& out) {
    if (auto e = field(key, true)) model_into(*e, key, out);
  }
  template <class T>
  void optional_model(std::string_view key, std::optional<T>& out) {
    auto e = field(key, false);
    if (!e) return;
    T value;
    if (model_into(*e, key, value)) out = std::move(value);
  }
  // A reference: a bare id string or the populated object.
  template <class T>
  void ref(std::string_view key, std::optional<Ref<T>>& out) {
    auto e = field(key, false);
    if (!e) return;
    if (e->is_string()) {
      out = Ref<T>(std::string(e->get_string().value_unsafe()));
    } else if (e->is_object()) {
      T value;
      if (model_into(*e, key, value)) out = Ref<T>(std::move(value));
    } else {
      mismatch(key, "expected an object or an id string", *e);
    }
  }
  // An array of models; absent or null leaves it empty unless `must_exist`.
  template <class T>
  void models(std::string_view key, std::vector<T>& out, bool must_exist = false) {
    auto e = field(key, must_exist);
    if (!e) return;
    simdjson::dom::array items;
    if (e->get_array().get(items) != simdjson::SUCCESS) {
      mismatch(key, "expected an array", *e);
      return;
    }
    std::size_t index = 0;
    for (simdjson::dom::element item : items) {
      T value;
      if (auto err = read_model(item, child(key) + "[" + std::to_string(index) + "]", value)) {
        error_ = std::move(err);
        return;
      }
      out.push_back(std::move(value));
      ++index;
    }
  }

 private:
  // The field's value: nullopt when absent or null (an error when `required`) or after an error.
  std::optional<simdjson::dom::element> field(std::string_view key, bool required);
  template <class T>
  bool model_into(simdjson::dom::element element, std::string_view key, T& out) {
    if (auto err = read_model(element, child(key), out)) {
      error_ = std::move(err);
      return false;
    }
    return true;
  }
  std::string child(std::string_view key) const;
  void mismatch(std::string_view key, std::string_view expected, simdjson::dom::element got);

  simdjson::dom::object object_;
  std::string path_;
  std::optional<Error> error_;
};

// The error for an element that should have been an object.
Error not_an_object(const std::string& path, simdjson::dom::element element);

// The fields every Tiledesk document carries (all optional: nested sub-documents may lack them).
template <class T>
void read_document_fields(FieldReader& r, T& out) {
  r.optional("id_project", out.id_project);
  r.optional("createdBy", out.created_by);
  r.optional("createdAt", out.created_at);
  r.optional("updatedAt", out.updated_at);
  r.optional("__v", out.version);
}

// Ends a model reader: the first error, or the object's compact JSON text into `out.json`.
template <class T>
std::optional<Error> finish(const FieldReader& r, simdjson::dom::element element, T& out) {
  if (r.failed()) return r.error();
  out.json = simdjson::to_string(element);
  return std::nullopt;
}

}  // namespace tdhook::detail
