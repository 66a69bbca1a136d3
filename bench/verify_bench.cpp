// Verification micro-benchmark (not a test): verifies one notification body in a loop on one
// thread and prints verifications per second, for comparison with
// ../shared/bench/node-verify-bench.js (JSON.parse + jsonwebtoken.verify) on the same body.
// Usage: verify_bench BODY_FILE SECRET [ITERATIONS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tdhook/verify.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: verify_bench BODY_FILE SECRET [ITERATIONS]\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string body = ss.str();
  const std::string secret = argv[2];
  const long n = argc > 3 ? std::atol(argv[3]) : 500000;

  tdhook::VerifierOptions options;
  options.secrets = {secret};
  options.max_age = std::chrono::seconds(0);  // the body may be older than a run; Node's bench has no age check either
  auto verifier = tdhook::Verifier::create(options);
  if (!verifier) {
    std::fprintf(stderr, "config: %s\n", verifier.error().detail.c_str());
    return 2;
  }
  const std::optional<std::string_view> header(secret);
  auto first = verifier->verify(header, body);
  if (!first) {
    std::fprintf(stderr, "body does not verify: %s\n", std::string(tdhook::to_string(first.error().code)).c_str());
    return 1;
  }
  for (long i = 0; i < n / 10; ++i) (void)verifier->verify(header, body);  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  long ok = 0;
  for (long i = 0; i < n; ++i) ok += verifier->verify(header, body).ok();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (ok != n) return 1;
  std::printf("tdhook verify: %.0f verifications/s (%.2f us each, body %zu bytes)\n", n / dt, dt / n * 1e6,
              body.size());
  return 0;
}
