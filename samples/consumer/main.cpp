// Verifies a notification read from stdin with the secret in TDHOOK_SECRET and prints the lead's
// e-mail: the smallest useful program on top of an installed libtdhook.
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>

#include "tdhook/tdhook.hpp"

int main() {
  const char* secret = std::getenv("TDHOOK_SECRET");
  if (secret == nullptr) return 2;
  tdhook::VerifierOptions options;
  options.secrets = {secret};
  options.max_age = std::chrono::seconds(0);
  auto verifier = tdhook::Verifier::create(options);
  if (!verifier) return 2;
  std::string body(std::istreambuf_iterator<char>(std::cin), {});
  auto event = verifier->verify(std::optional<std::string_view>(secret), body);
  if (!event) {
    std::cout << "rejected " << tdhook::to_string(event.error().code) << "\n";
    return 1;
  }
  auto lead = event->lead();
  if (!lead) return 1;
  std::cout << event->name() << " " << lead->email.value_or("") << "\n";
  return 0;
}
