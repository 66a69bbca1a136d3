#include "support/receiver_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tdhook/sign.hpp"

namespace tdhook::test {

std::vector<std::string> sample_event_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(source_dir() / "samples/events")) {
    const auto stem = entry.path().stem().string();
    if (entry.path().extension() == ".json" && !stem.ends_with(".response")) names.push_back(stem);
  }
  std::sort(names.begin(), names.end());
  return names;
}

OrderedJson load_sample(const std::string& name) {
  return OrderedJson::parse(read_file(source_dir() / "samples/events" / (name + ".json")));
}

std::string sign_body(const OrderedJson& payload, const OrderedJson& hook,
                      const std::string& secret, std::int64_t timestamp_ms) {
  const auto payload_text = payload.dump();
  const auto hook_text = hook.dump();
  NotificationInput input;
  input.payload_json = payload_text;
  input.hook_json = hook_text;
  input.timestamp_ms = timestamp_ms;
  auto body = build_notification(input, SigningKey{Algorithm::hs256, secret});
  if (!body) throw std::runtime_error("build_notification: " + body.error().detail);
  return *body;
}

std::string sign_sample(const std::string& name, const std::string& secret,
                        std::int64_t timestamp_ms) {
  const auto sample = load_sample(name);
  return sign_body(sample.at("payload"), sample.at("hook"), secret, timestamp_ms);
}

std::string numbered_event(int seq, std::int64_t timestamp_ms, std::size_t pad) {
  static const OrderedJson sample = load_sample("lead.create");
  OrderedJson payload = sample.at("payload");
  payload["seq"] = seq;
  if (pad > 0) payload["pad"] = std::string(pad, 'p');
  return sign_body(payload, sample.at("hook"), receiver_secret, timestamp_ms);
}

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

httplib::Result post_event(httplib::Client& client, const std::string& path,
                           const std::string& body, const std::string& secret,
                           const std::string& content_type) {
  httplib::Headers headers{{"User-Agent", "tiledesk-webhooks"},
                           {"Origin", "http://localhost:3000"}};
  if (!secret.empty()) headers.emplace("x-hook-secret", secret);
  return client.Post(path, headers, body, content_type);
}

RawResponse raw_exchange(int port, const std::string& request, std::chrono::milliseconds timeout) {
  RawResponse out;
  const auto started = std::chrono::steady_clock::now();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  const auto deadline = started + timeout;
  char buf[8192];
  while (true) {
    const auto head_end = out.text.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const auto cl = out.text.find("Content-Length: ");
      const auto length = cl == std::string::npos ? 0 : std::stoul(out.text.substr(cl + 16));
      if (out.text.size() >= head_end + 4 + length) break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (out.text.starts_with("HTTP/1.1 ") && out.text.size() >= 12) {
    out.status = std::stoi(out.text.substr(9, 3));
  }
  return out;
}

std::vector<nlohmann::json> parse_ndjson(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) break;  // an incomplete last line is still being written
    if (end > start) out.push_back(nlohmann::json::parse(text.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

std::string get_metrics(int port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/metrics");
  return res ? res->body : std::string();
}

std::optional<long long> metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::atoll(line.c_str() + series.size() + 1);
    }
  }
  return std::nullopt;
}

std::size_t count_lines_in(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return 0;
  return static_cast<std::size_t>(
      std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

std::string read_if_exists(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> receiver_args(const TempDir& dir) {
  write_file(dir / "secret", std::string(receiver_secret) + "\n");
  return {"--listen",      "127.0.0.1:0",
          "--data-dir",    (dir / "data").string(),
          "--secret-file", (dir / "secret").string(),
          "--retry-base",  "50ms"};
}

}  // namespace tdhook::test
