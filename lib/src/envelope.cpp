// The envelope is parsed twice over the same bytes, by design: simdjson's DOM parser validates
// the whole body and reads the fields, then its On-Demand parser (stage 1 only over the
// structural index) gives the exact byte spans of `payload`, `hook` and `token`, so that the
// receiver can splice them into event records without re-serializing anything.
#include "envelope.hpp"

#include <cmath>

#include "json_util.hpp"

namespace tdhook {
namespace {

using detail::has_duplicate_key;

Error envelope_error(std::string detail) {
  return Error{ErrorCode::malformed_envelope, std::move(detail)};
}

// Reads the hook's members; the three that identify the subscription are required strings.
std::optional<Error> read_hook(simdjson::dom::object hook_obj, Hook& hook) {
  if (has_duplicate_key(hook_obj)) return envelope_error("duplicated key in hook");
  bool have_id = false, have_event = false, have_project = false;
  for (auto field : hook_obj) {
    std::string_view key = field.key;
    std::string* target = nullptr;
    if (key == "_id") {
      target = &hook.id;
      have_id = true;
    } else if (key == "event") {
      target = &hook.event;
      have_event = true;
    } else if (key == "id_project") {
      target = &hook.project_id;
      have_project = true;
    } else if (key == "target") {
      target = &hook.target;
    } else if (key == "createdBy") {
      target = &hook.created_by;
    } else if (key == "createdAt") {
      target = &hook.created_at;
    } else if (key == "updatedAt") {
      target = &hook.updated_at;
    } else if (key == "__v") {
      int64_t v;
      if (field.value.get_int64().get(v) == simdjson::SUCCESS) hook.version = v;
      continue;
    } else {
      continue;
    }
    std::string_view text;
    if (field.value.get_string().get(text) != simdjson::SUCCESS) {
      if (key == "_id" || key == "event" || key == "id_project")
        return envelope_error("hook." + std::string(key) + " is not a string");
      continue;  // optional members of another type are left to the raw hook JSON
    }
    target->assign(text);
  }
  if (!have_id) return envelope_error("hook._id is missing");
  if (!have_event) return envelope_error("hook.event is missing");
  if (!have_project) return envelope_error("hook.id_project is missing");
  if (hook.event.empty()) return envelope_error("hook.event is empty");
  return std::nullopt;
}

std::optional<std::int64_t> read_timestamp(simdjson::dom::element value) {
  std::int64_t i;
  if (value.get_int64().get(i) == simdjson::SUCCESS) return i;
  double d;
  if (value.get_double().get(d) == simdjson::SUCCESS && std::isfinite(d) && d == std::floor(d) &&
      std::fabs(d) < 9.0e15)
    return static_cast<std::int64_t>(d);
  return std::nullopt;
}

// Raw text of a value, without the whitespace that may follow a scalar token.
std::string_view trim_right(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

simdjson::error_code raw_span(simdjson::ondemand::value value, std::string_view& out) {
  simdjson::ondemand::json_type type;
  if (auto e = value.type().get(type)) return e;
  switch (type) {
    case simdjson::ondemand::json_type::object: {
      simdjson::ondemand::object o;
      if (auto e = value.get_object().get(o)) return e;
      return o.raw_json().get(out);
    }
    case simdjson::ondemand::json_type::array: {
      simdjson::ondemand::array a;
      if (auto e = value.get_array().get(a)) return e;
      return a.raw_json().get(out);
    }
    default:
      out = trim_right(value.raw_json_token());
      return simdjson::SUCCESS;
  }
}

// Where each top-level value of the envelope lies in the body, read off the structural index that
// simdjson's stage 1 left in the DOM parser (every structural character and the first byte of
// every scalar, in order). This reuses the parse instead of indexing the body a second time.
// It relies on simdjson 3.0's `dom::parser::implementation` member (public, documented for
// benchmarking access); returns false when a key is written with escapes or the index has an
// unexpected shape, and the caller then falls back to the On-Demand API.
struct Spans {
  std::string_view payload, hook, token;
};

// The member key before value start `v` (structurals: key, ':', value), without whitespace.
std::string_view key_before(const char* data, const uint32_t* idx, uint32_t v) {
  return trim_right(std::string_view(data + idx[v - 2], idx[v - 1] - idx[v - 2]));
}

void assign_span(std::string_view key, std::string_view value, Spans& out) {
  if (key == "\"payload\"")
    out.payload = value;
  else if (key == "\"hook\"")
    out.hook = value;
  else if (key == "\"token\"")
    out.token = value;
}

// `after_payload`: how many members follow `payload` in the envelope (from the DOM). Knowing it,
// the backward walk stops at the payload's last structural instead of walking through it.
bool find_spans(const simdjson::dom::parser& parser, const char* data, std::size_t after_payload,
                Spans& out) {
  const auto* impl = parser.implementation.get();
  if (impl == nullptr) return false;
  const uint32_t* idx = impl->structural_indexes.get();
  const uint32_t n = impl->n_structural_indexes;
  if (n < 2 || data[idx[0]] != '{' || data[idx[n - 1]] != '}') return false;
  // Forward over the members before `payload`, backward over those after it: the payload, the
  // bulk of every notification, is never walked through.
  uint32_t i = 1, payload_start = 0;
  while (i + 2 < n && data[idx[i]] != '}') {
    if (data[idx[i + 1]] != ':') return false;
    uint32_t v = i + 2;
    std::string_view key = key_before(data, idx, v);
    if (key == "\"payload\"") {
      payload_start = v;
      break;
    }
    uint32_t end = v;
    if (data[idx[v]] == '{' || data[idx[v]] == '[') {
      for (int depth = 0; end < n; ++end) {
        char c = data[idx[end]];
        if (c == '{' || c == '[')
          ++depth;
        else if ((c == '}' || c == ']') && --depth == 0)
          break;
      }
      if (end >= n) return false;
      assign_span(key, std::string_view(data + idx[v], idx[end] + 1 - idx[v]), out);
    } else {
      assign_span(key, trim_right(std::string_view(data + idx[v], idx[v + 1] - idx[v])), out);
    }
    i = end + 1;
    if (i < n && data[idx[i]] == ',') ++i;
  }
  if (payload_start == 0) return true;  // no payload: the caller reports what is missing
  uint32_t j = n - 2;                   // the last member's value ends here
  for (std::size_t member = 0; member < after_payload; ++member) {
    uint32_t begin = j;
    std::string_view value;
    if (data[idx[j]] == '}' || data[idx[j]] == ']') {
      for (int depth = 0;; --begin) {
        char c = data[idx[begin]];
        if (c == '}' || c == ']')
          ++depth;
        else if ((c == '{' || c == '[') && --depth == 0)
          break;
        if (begin == 0) return false;
      }
      value = std::string_view(data + idx[begin], idx[j] + 1 - idx[begin]);
    } else {
      value = trim_right(std::string_view(data + idx[j], idx[j + 1] - idx[j]));
    }
    if (begin < 4 || begin <= payload_start || data[idx[begin - 1]] != ':' ||
        data[idx[begin - 3]] != ',') {
      return false;
    }
    assign_span(key_before(data, idx, begin), value, out);
    j = begin - 4;  // the end of the value before this member's key and its comma
  }
  // What is left between the payload's first structural and `j` is the payload itself (the
  // DOM parse has validated the document, so its brackets match).
  if (j < payload_start) return false;
  const char open = data[idx[payload_start]];
  if (open == '{' || open == '[') {
    if (data[idx[j]] != (open == '{' ? '}' : ']')) return false;
    out.payload = std::string_view(data + idx[payload_start], idx[j] + 1 - idx[payload_start]);
  } else {
    if (j != payload_start) return false;
    out.payload = trim_right(std::string_view(data + idx[j], idx[j + 1] - idx[j]));
  }
  return true;
}

bool find_spans_on_demand(const char* data, std::size_t len, std::size_t capacity, Spans& out) {
  thread_local simdjson::ondemand::parser od_parser;
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (od_parser.iterate(data, len, capacity).get(doc) || doc.get_object().get(obj)) return false;
  for (auto field : obj) {
    std::string_view key;
    simdjson::ondemand::value value;
    if (field.unescaped_key().get(key) || field.value().get(value)) return false;
    std::string_view* target = key == "payload" ? &out.payload
                               : key == "hook"  ? &out.hook
                               : key == "token" ? &out.token
                                                : nullptr;
    if (target != nullptr && raw_span(value, *target)) return false;
  }
  return true;
}

}  // namespace

Result<Event> EventBuilder::parse(std::string_view body) {
  Event event;
  event.body_.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  event.body_.assign(body);
  const char* data = event.body_.data();
  const std::size_t len = event.body_.size();

  auto& parser = detail::thread_dom_parser();
  simdjson::dom::element root;
  if (auto e = parser.parse(data, len, false).get(root))
    return Error{ErrorCode::malformed_body,
                 std::string("body is not valid JSON: ") + simdjson::error_message(e)};
  simdjson::dom::object envelope;
  if (root.get_object().get(envelope) != simdjson::SUCCESS)
    return Error{ErrorCode::malformed_body, "body is not a JSON object"};
  if (has_duplicate_key(envelope)) return envelope_error("duplicated key in the envelope");

  bool have_timestamp = false, have_payload = false, have_hook = false;
  std::size_t after_payload = 0;  // members after `payload`, for find_spans
  for (auto field : envelope) {
    if (have_payload) ++after_payload;
    std::string_view key = field.key;
    if (key == "timestamp") {
      auto ts = read_timestamp(field.value);
      if (!ts) return envelope_error("timestamp is not an integer");
      event.timestamp_ = *ts;
      have_timestamp = true;
    } else if (key == "hook") {
      simdjson::dom::object hook_obj;
      if (field.value.get_object().get(hook_obj) != simdjson::SUCCESS)
        return envelope_error("hook is not an object");
      if (auto err = read_hook(hook_obj, event.hook_)) return std::move(*err);
      have_hook = true;
    } else if (key == "payload") {
      have_payload = true;
    } else if (key == "token") {
      if (!field.value.is_string()) return envelope_error("token is not a string");
      event.token_present_ = true;
    }
  }
  if (!have_hook) return envelope_error("hook is missing");
  if (!have_timestamp) return envelope_error("timestamp is missing");
  if (!have_payload) return envelope_error("payload is missing");

  // Byte spans of payload, hook and token, from the structural index the DOM parse just built;
  // the On-Demand pass is the fallback for keys written with escapes.
  Spans spans;
  auto complete = [&] {
    return !spans.payload.empty() && !spans.hook.empty() &&
           (!event.token_present_ || spans.token.size() >= 2);
  };
  if (!find_spans(parser, data, after_payload, spans) || !complete()) {
    spans = {};
    if (!find_spans_on_demand(data, len, event.body_.capacity(), spans) || !complete())
      return Error{ErrorCode::malformed_body, "body could not be indexed"};
  }
  auto to_span = [data](std::string_view v) {
    return Event::Span{static_cast<std::size_t>(v.data() - data), v.size()};
  };
  event.payload_ = to_span(spans.payload);
  event.hook_span_ = to_span(spans.hook);
  if (event.token_present_) event.token_ = to_span(spans.token.substr(1, spans.token.size() - 2));
  return event;
}

}  // namespace tdhook
