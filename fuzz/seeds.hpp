#pragma once
// Seed inputs derived from files the project already has, so that they are not committed twice.
// fuzz_make_corpus writes them out for scripts/fuzz; tests/fuzz_regression_test.cpp feeds them
// through the entry points directly. Per target:
//   envelope      samples/events/*.json as they are, each signed as Tiledesk would (HS256 with
//                 the fixtures' secret, at the fuzz clock), lead.create signed with every global
//                 key algorithm, and every body of tests/fixtures/verify-vectors.json
//   jws           the tokens of all of those, and their decoded header and claims (the target's
//                 "sign it here" form)
//   http_request  tests/fixtures/requests/*.http, every vector as a raw HTTP/1.1 request, and a
//                 signed sample sent plainly and chunked
//   pattern       the sample event names under a few pattern sets
//   config        samples/config/*.toml
//   segment       every sample as an event log entry (every other one with an original), and
//                 segments of three entries whole, torn, damaged and with garbage between
// The hand-made seeds are files in fuzz/corpus/<target>/.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "entry_points.hpp"

namespace tdhook::fuzz {

struct Seed {
  std::string target;  // envelope, jws, http_request, pattern, config, http_server, segment
  std::string name;    // a file name
  std::string content;
};

namespace seeds {

namespace fs = std::filesystem;
using nlohmann::json;

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::vector<fs::path> files_in(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ext) out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A signed notification for a sample, or "" when the sample is not an envelope.
inline std::string sign_sample(const std::string& text, const SigningKey& key, bool global) {
  const json sample = json::parse(text, nullptr, false);
  if (!sample.is_object() || !sample.contains("payload") || !sample.contains("hook")) return {};
  const std::string payload = sample["payload"].dump();
  const std::string hook = sample["hook"].dump();
  NotificationInput in;
  in.payload_json = payload;
  in.hook_json = hook;
  in.timestamp_ms = kNowMs - 1500;
  in.global = global;
  auto body = build_notification(in, key);
  if (!body) throw std::runtime_error("cannot sign a sample: " + body.error().detail);
  return *body;
}

inline std::string token_of(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("token") || !j["token"].is_string()) return {};
  return j["token"].get<std::string>();
}

inline std::string raw_request(const json& request) {
  std::string text = request.value("method", "POST") + " /hooks/tiledesk HTTP/1.1\r\n";
  for (const auto& [name, value] : request["headers"].items())
    text += name + ": " + value.get<std::string>() + "\r\n";
  const std::string body = request["body"].get<std::string>();
  return text + "content-length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace seeds

// Throws std::runtime_error when a source file is missing.
inline std::vector<Seed> derive_seeds(const std::filesystem::path& src) {
  using namespace seeds;
  std::vector<Seed> out;
  const SigningKey secret{Algorithm::hs256, std::string(kSecret)};
  std::vector<std::string> bodies;  // the ones with a token
  std::vector<std::string> names;   // sample event names
  for (const auto& path : files_in(src / "samples/events", ".json")) {
    const std::string text = slurp(path);
    const std::string stem = path.stem().string();
    out.push_back({"envelope", "sample-" + stem, text});
    const std::string body = sign_sample(text, secret, false);
    if (body.empty()) continue;
    names.push_back(json::parse(text)["hook"].value("event", stem));
    out.push_back({"envelope", "signed-" + stem, body});
    bodies.push_back(body);
  }
  const std::string lead = slurp(src / "samples/events/lead.create.json");
  const std::string rsa = slurp(src / "tests/fixtures/keys/rs256-private.pem");
  const std::map<std::string, SigningKey> global_keys = {
      {"rs256", {Algorithm::rs256, rsa}},
      {"rs384", {Algorithm::rs384, rsa}},
      {"rs512", {Algorithm::rs512, rsa}},
      {"ps256", {Algorithm::ps256, rsa}},
      {"es256", {Algorithm::es256, slurp(src / "tests/fixtures/keys/es256-private.pem")}},
      {"es384", {Algorithm::es384, slurp(src / "tests/fixtures/keys/es384-private.pem")}},
      {"hs256", {Algorithm::hs256, std::string(kGlobalSecret)}}};
  for (const auto& [name, key] : global_keys) {
    const std::string body = sign_sample(lead, key, true);
    out.push_back({"envelope", "global-" + name + "-lead.create", body});
    bodies.push_back(body);
  }

  const json vectors = json::parse(slurp(src / "tests/fixtures/verify-vectors.json"))["vectors"];
  for (const auto& v : vectors) {
    const std::string name = v["name"].get<std::string>();
    const std::string body = v["request"]["body"].get<std::string>();
    out.push_back({"envelope", "vector-" + name, body});
    out.push_back({"http_request", "vector-" + name + ".http", raw_request(v["request"])});
    bodies.push_back(body);
  }

  int n = 0;
  for (const auto& body : bodies) {
    const std::string token = token_of(body);
    if (token.empty()) continue;
    const std::string id = std::to_string(n++);
    out.push_back({"jws", "token-" + id, token});
    // header '\n' claims: the form the jws target signs itself.
    if (auto parts = tdhook::detail::split_compact_jws(token);
        parts && !parts->header.empty() && parts->header.front() == '{')
      out.push_back({"jws", "decoded-" + id, parts->header + "\n" + parts->claims});
  }

  for (const auto& path : files_in(src / "tests/fixtures/requests", ".http"))
    out.push_back({"http_request", path.filename().string(), slurp(path)});
  if (!bodies.empty()) {
    const std::string& body = bodies.front();
    const std::string head =
        "POST /hooks/tiledesk HTTP/1.1\r\nContent-Type: application/json\r\nx-hook-secret: " +
        std::string(kSecret) +
        "\r\nUser-Agent: tiledesk-webhooks\r\nOrigin: http://localhost:3000\r\n";
    out.push_back({"http_request", "signed.http",
                   head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body});
    const std::size_t half = body.size() / 2;
    std::ostringstream chunked;
    chunked << head << "Transfer-Encoding: chunked\r\n\r\n"
            << std::hex << half << "\r\n"
            << body.substr(0, half) << "\r\n"
            << (body.size() - half) << ";ext=1\r\n"
            << body.substr(half) << "\r\n0\r\nX-Trailer: 1\r\n\r\n";
    out.push_back({"http_request", "signed-chunked.http", chunked.str()});
  }

  std::string all_names;
  for (const auto& name : names) all_names += name + "\n";
  const char* sets[] = {"**",
                        "lead.create,request.*,message.create.**",
                        "request.*, message.create, operator.select",
                        "*.create,*.update,*.delete",
                        "project_user.**,faq.*,event.emit.**",
                        ""};
  n = 0;
  for (const char* set : sets)
    out.push_back(
        {"pattern", "samples-" + std::to_string(n++), std::string(set) + "\n" + all_names});

  for (const auto& path : files_in(src / "samples/config", ".toml"))
    out.push_back({"config", path.filename().string(), slurp(path)});
  // The receiver's parser reads the same requests as `tdhook verify`'s reader.
  const std::size_t before = out.size();
  for (std::size_t k = 0; k < before; ++k) {
    if (out[k].target == "http_request")
      out.push_back({"http_server", out[k].name, out[k].content});
  }

  // The event log: each sample stored as an entry, and a few segments of three of them whole,
  // torn, damaged in the middle and with garbage between, so that the fuzzer starts from real
  // framing and CRCs.
  namespace lg = receiver::log;
  const auto text_of = [](const json& object, const char* key) {
    const auto it = object.is_object() ? object.find(key) : object.end();
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::vector<std::string> entries;
  for (const auto& path : files_in(src / "samples/events", ".json")) {
    const json sample = json::parse(slurp(path), nullptr, false);
    if (!sample.is_object()) continue;
    const json hook = sample.value("hook", json::object());
    lg::Entry e;
    e.seq = entries.size() + 1;
    e.received_at_ms = kNowMs;
    e.timestamp_ms = kNowMs - 1500;
    e.delivery_id = "d-" + std::to_string(e.seq);
    e.dedup_key = "k-" + path.stem().string();
    e.event = text_of(hook, "event");
    e.project_id = text_of(hook, "id_project");
    e.subscription_id = text_of(hook, "_id");
    for (std::uint64_t s = 0; s < e.seq % 3; ++s) e.sinks.push_back("sink-" + std::to_string(s));
    e.record = sample.dump();
    // Every other entry keeps the request as a forward: sink needs it (store/record.hpp).
    if (e.seq % 2 == 0) {
      e.original =
          "Content-Type: application/json\r\nx-hook-secret: s\r\nUser-Agent: "
          "tiledesk\r\n\r\n" +
          e.record;
    }
    std::string bytes;
    lg::encode_entry(e, bytes);
    out.push_back({"segment", "entry-" + path.stem().string(), bytes});
    entries.push_back(std::move(bytes));
  }
  std::string empty;
  lg::encode_entry(lg::Entry{}, empty);
  out.push_back({"segment", "entry-empty", empty});
  if (entries.size() >= 3) {
    const std::string three = entries[0] + entries[1] + entries[2];
    out.push_back({"segment", "three", three});
    out.push_back({"segment", "torn", three.substr(0, three.size() - entries[2].size() / 2)});
    std::string damaged = three;
    damaged[entries[0].size() + entries[1].size() / 2] ^= 0x20;
    out.push_back({"segment", "damaged", damaged});
    out.push_back({"segment", "garbage-between", entries[0] + "TDH1junk" + empty + entries[1]});
  }
  return out;
}

}  // namespace tdhook::fuzz
