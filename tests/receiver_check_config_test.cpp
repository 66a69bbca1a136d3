// tdhook-receiver --check-config (issue 14): every problem found in the files a configuration
// names is listed with its file (and line, for the TOML file), exit 2; a good one prints what
// would run, exit 0; it never listens.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tls_client.hpp"

using namespace tdhook::test;
using namespace std::chrono_literals;

namespace {

struct Checked {
  int code = -1;
  std::string out, err;
};

Checked check(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "--check-config");
  args.insert(args.end(), {"--data-dir", (dir / "data").string()});
  ReceiverProcess rx(std::move(args));
  Checked c;
  c.code = rx.wait_exit(30s).value_or(-1);
  c.out = rx.stdout_text();
  c.err = rx.stderr_text();
  return c;
}

}  // namespace

TEST_SUITE("receiver check-config") {
  TEST_CASE("a good configuration prints what would run, exits 0 and never listens") {
    TempDir dir;
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    write_file(dir / "tdhook.toml",
               "[receiver]\nlisten = \"127.0.0.1:0\"\nevents = \"lead.create,request.*\"\n\n"
               "[[sink]]\nname = \"crm\"\nspec = \"https://crm.example/hook\"\n");
    const auto c = check(dir, {"--config", (dir / "tdhook.toml").string(), "--secret-file",
                               (dir / "secret").string()});
    INFO("stdout: " << c.out << "\nstderr: " << c.err);
    CHECK(c.code == 0);
    CHECK(c.out.find("1 secret(s)") != std::string::npos);
    CHECK(c.out.find("events     lead.create,request.*") != std::string::npos);
    CHECK(c.out.find("sink       crm = https://crm.example/hook") != std::string::npos);
    CHECK(c.err.find("listening") == std::string::npos);
    CHECK(c.out.find(receiver_secret) == std::string::npos);
    CHECK(c.err.find(receiver_secret) == std::string::npos);
  }

  TEST_CASE("each kind of mistake is reported with its file, and line where there is one") {
    TempDir dir;
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    const auto secret = (dir / "secret").string();
    struct Case {
      const char* name;
      std::vector<std::string> args;
      std::string file_text;  // written to tdhook.toml when not empty
      std::vector<std::string> expected;
    };
    const auto toml = (dir / "tdhook.toml").string();
    write_file(dir / "empty", "\n");
    write_file(dir / "bad.pem", "not a key\n");
    const std::vector<Case> cases = {
        {"unknown key",
         {"--config", toml, "--secret-file", secret},
         "[receiver]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n",
         {"tdhook.toml:3", "lisen", "unknown"}},
        {"bad duration",
         {"--config", toml, "--secret-file", secret},
         "[receiver]\nread_timeout = \"5 parsecs\"\n",
         {"tdhook.toml:2", "read_timeout", "bad duration"}},
        {"missing secret file",
         {"--secret-file", (dir / "missing").string()},
         "",
         {"missing", "secret file"}},
        {"empty secret", {"--secret-file", (dir / "empty").string()}, "", {"empty", "no secret"}},
        {"bad PEM",
         {"--global-key", "RS256:" + (dir / "bad.pem").string()},
         "",
         {"global key RS256:" + (dir / "bad.pem").string(), "PEM"}},
        {"unknown sink",
         {"--secret-file", secret, "--sink", "bogus:x"},
         "",
         {"unknown sink", "bogus:x"}},
    };
    for (const auto& k : cases) {
      CAPTURE(k.name);
      if (!k.file_text.empty()) write_file(dir / "tdhook.toml", k.file_text);
      const auto c = check(dir, k.args);
      INFO("stderr: " << c.err);
      CHECK(c.code == 2);
      for (const auto& part : k.expected) CHECK(c.err.find(part) != std::string::npos);
      CHECK(c.out.find("ok") == std::string::npos);
    }
  }

  TEST_CASE("every problem in the config file and the flags is listed, not only the first") {
    TempDir dir;
    write_file(dir / "tdhook.toml",
               "[receiver]\nlisen = \"x\"\nread_timeout = \"5 parsecs\"\n\n[[sink]]\n"
               "spec = \"bogus:x\"\n\n[[sink]]\nspec = \"stdout\"\ncolour = \"red\"\n");
    const auto c = check(dir, {"--config", (dir / "tdhook.toml").string(), "--tls-cert",
                               (dir / "cert.pem").string()});
    INFO("stderr: " << c.err);
    CHECK(c.code == 2);
    CHECK(c.err.find("tdhook.toml:2: lisen: unknown") != std::string::npos);
    CHECK(c.err.find("tdhook.toml:3: read_timeout: bad duration") != std::string::npos);
    CHECK(c.err.find("tdhook.toml:6: unknown sink") != std::string::npos);
    CHECK(c.err.find("tdhook.toml:10: colour: unknown [[sink]] key") != std::string::npos);
    CHECK(c.err.find("--tls-cert and --tls-key go together") != std::string::npos);
    CHECK(c.err.find("5 problems found") != std::string::npos);
  }

  TEST_CASE("problems in several files are all listed") {
    TempDir dir;
    const auto c = check(dir, {"--secret-file", (dir / "missing-secret").string(), "--tls-cert",
                               (dir / "cert.pem").string(), "--tls-key", (dir / "key.pem").string(),
                               "--sink", "file:" + (dir / "no-such-dir" / "out.ndjson").string()});
    INFO("stderr: " << c.err);
    CHECK(c.code == 2);
    CHECK(c.err.find("missing-secret") != std::string::npos);
    CHECK(c.err.find("cert.pem") != std::string::npos);
    CHECK(c.err.find("key.pem") != std::string::npos);
    CHECK(c.err.find("no-such-dir") != std::string::npos);
    CHECK(c.err.find("4 problems found") != std::string::npos);
  }

  TEST_CASE("the TLS files are loaded, not only read, and the TLS settings are printed") {
    TempDir dir;
    write_file(dir / "secret", std::string(receiver_secret) + "\n");
    const auto secret = (dir / "secret").string();
    const auto one = make_test_cert(dir, "tdhook-one", "one");
    const auto two = make_test_cert(dir, "tdhook-two", "two");
    write_file(dir / "junk.pem", "not a certificate\n");

    const auto good = check(dir, {"--secret-file", secret, "--tls-cert", one.cert.string(),
                                  "--tls-key", one.key.string(), "--tls-min-version", "1.3"});
    INFO("stdout: " << good.out << "\nstderr: " << good.err);
    CHECK(good.code == 0);
    CHECK(good.out.find("tls        " + one.cert.string() + ", TLS 1.3 or later") !=
          std::string::npos);
    CHECK(good.out.find("/CN=tdhook-one") != std::string::npos);
    CHECK(good.out.find("PRIVATE KEY") == std::string::npos);

    const auto junk = check(dir, {"--secret-file", secret, "--tls-cert",
                                  (dir / "junk.pem").string(), "--tls-key", one.key.string()});
    CHECK(junk.code == 2);
    CHECK(junk.err.find("cannot load the TLS certificate " + (dir / "junk.pem").string()) !=
          std::string::npos);

    const auto mismatch = check(dir, {"--secret-file", secret, "--tls-cert", one.cert.string(),
                                      "--tls-key", two.key.string()});
    CHECK(mismatch.code == 2);
    CHECK(mismatch.err.find("cannot load the TLS key " + two.key.string()) != std::string::npos);
    CHECK(mismatch.err.find("key values mismatch") != std::string::npos);

    const auto version = check(dir, {"--secret-file", secret, "--tls-cert", one.cert.string(),
                                     "--tls-key", one.key.string(), "--tls-min-version", "1.1"});
    CHECK(version.code == 2);
    CHECK(version.err.find("--tls-min-version: expected 1.2 or 1.3") != std::string::npos);

    const auto alone = check(dir, {"--secret-file", secret, "--tls-min-version", "1.3"});
    CHECK(alone.code == 2);
    CHECK(alone.err.find("needs --tls-cert") != std::string::npos);
  }
}
