// The receiver's config file reader (receiver/config/config_file.hpp, toml++ underneath), and
// what load_config makes of its document: every value type, errors that name the file, the line
// and the column, and the values that must be refused.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "config/config.hpp"
#include "config/config_file.hpp"
#include "support/files.hpp"

using tdhook::ErrorCode;
using tdhook::receiver::parse_toml;
using tdhook::receiver::TomlDocument;
using tdhook::receiver::TomlTable;
using tdhook::receiver::TomlValue;
using tdhook::test::read_file;
using tdhook::test::source_dir;
using tdhook::test::TempDir;
using tdhook::test::write_file;

namespace {

const TomlValue& entry(const TomlTable& table, const std::string& key) {
  for (const auto& [name, value] : table.entries)
    if (name == key) return value;
  FAIL("no key " << key << " in [" << table.name << "]");
  static const TomlValue none;
  return none;
}

// The error detail of a document that must be refused.
std::string refusal(const std::string& text) {
  const auto doc = parse_toml(text, "t.toml");
  REQUIRE_MESSAGE(!doc.ok(), text);
  CHECK(doc.error().code == ErrorCode::invalid_config);
  return doc.error().detail;
}

struct Loaded {
  bool run = false;
  int exit_code = 0;
  std::string err;
  tdhook::receiver::Config config;
};

// load_config over `text` written to t.toml.
Loaded load(const TempDir& dir, const std::string& text) {
  write_file(dir / "t.toml", text);
  const std::string path = (dir / "t.toml").string();
  const char* argv[] = {"tdhook-receiver", "--config", path.c_str()};
  Loaded l;
  std::ostringstream out, err;
  const auto outcome = tdhook::receiver::load_config(3, argv, l.config, out, err);
  l.run = outcome.run;
  l.exit_code = outcome.exit_code;
  l.err = err.str();
  return l;
}

}  // namespace

TEST_SUITE("config file") {
  TEST_CASE("every value type is read: strings of each TOML kind, integers, booleans, arrays") {
    const auto doc = parse_toml(
        "# a comment\n"
        "[receiver]\n"
        "basic = \"a \\\"q\\\" \\\\ \\t \\u00e9 \\U0001F600\"\n"
        "literal = 'C:\\dir\\'  # no escapes in literal strings\n"
        "multi = \"\"\"\n"
        "two \\\n"
        "   lines\"\"\"\n"
        "multi_literal = '''x\n"
        "y'''\n"
        "plain = 42\n"
        "signed = +8\n"
        "negative = -17\n"
        "grouped = 1_000_000\n"
        "hex = 0xff\n"
        "octal = 0o17\n"
        "binary = 0b101\n"
        "yes = true\n"
        "no = false\n"
        "list = [\"a\", 'b',\n"
        "  # a comment inside\n"
        "  \"c\",  # trailing comma\n"
        "]\n"
        "empty = []\n"
        "duration = \"30s\"\n",
        "t.toml");
    REQUIRE_MESSAGE(doc.ok(), doc.error().detail);
    REQUIRE(doc->tables.size() == 1);
    const auto& t = doc->tables[0];
    CHECK(t.name == "receiver");
    CHECK_FALSE(t.array_element);
    CHECK(t.line == 2);
    CHECK(entry(t, "basic").kind == TomlValue::Kind::string);
    CHECK(entry(t, "basic").text == "a \"q\" \\ \t \xc3\xa9 \xf0\x9f\x98\x80");
    CHECK(entry(t, "literal").text == "C:\\dir\\");
    CHECK(entry(t, "multi").text == "two lines");
    CHECK(entry(t, "multi_literal").text == "x\ny");
    CHECK(entry(t, "plain").kind == TomlValue::Kind::integer);
    CHECK(entry(t, "plain").integer == 42);
    CHECK(entry(t, "signed").integer == 8);
    CHECK(entry(t, "negative").integer == -17);
    CHECK(entry(t, "grouped").integer == 1000000);
    CHECK(entry(t, "hex").integer == 255);
    CHECK(entry(t, "octal").integer == 15);
    CHECK(entry(t, "binary").integer == 5);
    CHECK(entry(t, "yes").kind == TomlValue::Kind::boolean);
    CHECK(entry(t, "yes").boolean);
    CHECK_FALSE(entry(t, "no").boolean);
    CHECK(entry(t, "list").kind == TomlValue::Kind::array);
    CHECK(entry(t, "list").items == std::vector<std::string>{"a", "b", "c"});
    CHECK(entry(t, "empty").kind == TomlValue::Kind::array);
    CHECK(entry(t, "empty").items.empty());
    CHECK(entry(t, "duration").text == "30s");
    // Where each value starts, and the entries in file order (toml++ sorts them by name).
    CHECK(entry(t, "plain").line == 10);
    CHECK(entry(t, "plain").column == 9);
    CHECK(t.entries.front().first == "basic");
    CHECK(t.entries.back().first == "duration");
  }

  TEST_CASE("[[sink]] tables come in file order after [receiver], as inline tables do") {
    const auto doc = parse_toml(
        "[[sink]]\nspec = \"stdout\"\n[receiver]\nlisten = \"127.0.0.1:0\"\n"
        "[[sink]]\nspec = \"file:/tmp/x\"\nevents = [\"lead.*\"]\n",
        "t.toml");
    REQUIRE_MESSAGE(doc.ok(), doc.error().detail);
    REQUIRE(doc->tables.size() == 3);
    CHECK(doc->tables[0].name == "sink");
    CHECK(doc->tables[0].array_element);
    CHECK(doc->tables[1].name == "receiver");
    CHECK(doc->tables[2].name == "sink");
    CHECK(entry(doc->tables[2], "spec").text == "file:/tmp/x");
    CHECK(entry(doc->tables[2], "spec").line == 6);

    const auto inline_doc = parse_toml(
        "receiver = { listen = \"127.0.0.1:0\" }\nsink = [{ spec = \"stdout\" }]\n", "t.toml");
    REQUIRE_MESSAGE(inline_doc.ok(), inline_doc.error().detail);
    REQUIRE(inline_doc->tables.size() == 2);
    CHECK(inline_doc->tables[1].name == "sink");
    CHECK(inline_doc->tables[1].array_element);
  }

  TEST_CASE("a syntax error names the file, the line and the column, and what is wrong") {
    const auto detail = refusal("[receiver]\n# fine\nlisten = \"127.0.0.1:8080\n");
    CHECK(detail.starts_with("t.toml:3:"));
    CHECK(detail.find("string") != std::string::npos);

    const auto header = refusal("[receiver]\nthreads = 4\n[sink\n");
    CHECK(header.starts_with("t.toml:3:6: "));

    const auto unit = refusal("[receiver]\nread_timeout = 30s\n");
    CHECK(unit.starts_with("t.toml:2:18: "));
    CHECK(unit.find("durations and sizes with units are strings") != std::string::npos);
  }

  TEST_CASE("inputs that hit toml++ 3.3's defects are syntax errors like any other") {
    // config_file.cpp says how its assertion and its unreachable branch are kept out.
    for (const char* header : {"[{sink]]", "[=]", "[#]", "[[,]]", "[\n"}) {
      CAPTURE(header);
      const auto detail = refusal(std::string("[receiver]\n") + header + "\n");
      CHECK(detail.starts_with("t.toml:2:"));
      CHECK(detail.find("expected bare key starting character or string delimiter") !=
            std::string::npos);
    }
    // Characters from U+00A1 on right after a value ("ä", "Ѐ"), and the whitespace ones.
    for (const char* after :
         {"-\xc3\xa4", "1\xc3\xa4", "true\xd0\x80", "1\xc2\xa0", "1\xe3\x80\x80"}) {
      CAPTURE(after);
      CHECK(refusal(std::string("[receiver]\nthreads = ") + after + "\n").starts_with("t.toml:2:"));
    }
    const auto fine = parse_toml("[receiver]\npath = \"/\xc3\xa4\" # \xc3\xa4\n", "t.toml");
    REQUIRE_MESSAGE(fine.ok(), fine.error().detail);
    CHECK(entry(fine->tables[0], "path").text == "/\xc3\xa4");
  }

  TEST_CASE("a key given twice, or a table defined twice, is refused") {
    const auto key = refusal("[receiver]\nthreads = 4\nlisten = \"a:1\"\nthreads = 5\n");
    CHECK(key.starts_with("t.toml:4:"));
    CHECK(key.find("'threads'") != std::string::npos);

    const auto table = refusal("[receiver]\nthreads = 4\n\n[receiver]\n");
    CHECK(table.starts_with("t.toml:4:"));
    CHECK(table.find("'receiver'") != std::string::npos);
  }

  TEST_CASE("a non-table where a table is expected is refused") {
    const auto top = refusal("receiver = \"127.0.0.1:8080\"\n");
    CHECK(top ==
          "t.toml:1:1: key 'receiver' outside of a table: put it under [receiver] or "
          "[[sink]]");
    CHECK(refusal("listen = \"x\"\n[receiver]\n").starts_with("t.toml:1:1: key 'listen' outside"));
    CHECK(refusal("sink = [\"stdout\"]\n").find("outside of a table") != std::string::npos);
    // A table inside [receiver] is a value the receiver has no use for.
    const auto nested = refusal("[receiver]\n[receiver.tls]\ncert = \"x\"\n");
    CHECK(nested.starts_with("t.toml:2:"));
    CHECK(nested.find("tls: unsupported value, a table") != std::string::npos);

    // [[receiver]] and [sink] read, and load_config refuses them by name.
    TempDir dir;
    const auto receiver_array = load(dir, "[[receiver]]\nlisten = \"127.0.0.1:0\"\n");
    CHECK_FALSE(receiver_array.run);
    CHECK(receiver_array.err.find(
              ":1: unknown table 'receiver' (expected [receiver], [store] or [[sink]])") !=
          std::string::npos);
    const auto sink_table = load(dir, "[sink]\nspec = \"stdout\"\n");
    CHECK_FALSE(sink_table.run);
    CHECK(sink_table.err.find("unknown table 'sink'") != std::string::npos);
  }

  TEST_CASE("values the receiver has no use for are refused where they stand") {
    CHECK(refusal("[receiver]\nthreads = 1.5\n") ==
          "t.toml:2:11: threads: unsupported value, a floating-point number (use a \"string\", "
          "an integer, true/false or [\"a\", \"b\"])");
    CHECK(refusal("[receiver]\nsince = 1979-05-27\n").find("a date") != std::string::npos);
    CHECK(refusal("[receiver]\npass_env = [\"A\", 2]\n") ==
          "t.toml:2:18: pass_env: arrays may only hold strings, got an integer");
    CHECK(refusal("[receiver]\nreply = [[\"a\"]]\n").find("got an array") != std::string::npos);
  }

  TEST_CASE("an unknown key is refused by load_config with the file, the line and the key") {
    TempDir dir;
    const auto receiver = load(dir, "[receiver]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n");
    CHECK_FALSE(receiver.run);
    CHECK(receiver.exit_code == 2);
    CHECK(receiver.err ==
          "tdhook-receiver: " + (dir / "t.toml").string() + ":3: lisen: unknown [receiver] key\n");
    const auto sink = load(dir, "[[sink]]\nspec = \"stdout\"\nretries = 3\n");
    CHECK_FALSE(sink.run);
    CHECK(sink.err.find("t.toml:3: retries: unknown [[sink]] key") != std::string::npos);
  }

  TEST_CASE(
      "[store] fallback and fallback_max are the --store-fallback flags; a bad value is "
      "refused where it stands") {
    TempDir dir;
    const auto ok = load(dir,
                         "[store]\nurl = \"nats://127.0.0.1:4222\"\nfallback = \"local\"\n"
                         "fallback_max = \"10m\"\n");
    CHECK_MESSAGE(ok.run, ok.err);
    CHECK(ok.config.store_fallback);
    CHECK(ok.config.store_fallback_max == std::chrono::minutes(10));
    const auto off = load(dir, "[store]\nurl = \"nats://127.0.0.1:4222\"\n");
    CHECK_MESSAGE(off.run, off.err);
    CHECK_FALSE(off.config.store_fallback);
    const auto bad = load(dir, "[store]\nurl = \"nats://127.0.0.1:4222\"\nfallback = \"disk\"\n");
    CHECK_FALSE(bad.run);
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("t.toml:3:") != std::string::npos);
    CHECK(bad.err.find("expected off or local") != std::string::npos);
  }

  TEST_CASE("an array where a sink takes one value is refused, not read past its end") {
    TempDir dir;
    const auto empty = load(dir, "[[sink]]\nspec = \"stdout\"\nname = []\n");
    CHECK_FALSE(empty.run);
    CHECK(empty.err.find("t.toml:3: name: expected a single value") != std::string::npos);
    const auto two = load(dir, "[[sink]]\nspec = \"stdout\"\nretry_max = [\"1\", \"2\"]\n");
    CHECK_FALSE(two.run);
    CHECK(two.err.find("retry_max: expected a single value") != std::string::npos);
  }

  TEST_CASE("integers beyond 64 bits are refused, and the 64-bit limits are read exactly") {
    for (const char* huge : {"9223372036854775808", "-9223372036854775809", "18446744073709551617",
                             "20000000000000000000", "0xffffffffffffffff",
                             "100000000000000000000000000000000000000"}) {
      CAPTURE(huge);
      const auto detail = refusal(std::string("[receiver]\nmax_pending = ") + huge + "\n");
      CHECK(detail.starts_with("t.toml:2:"));
      CHECK(detail.find("not representable in 64 bits") != std::string::npos);
    }
    const auto doc = parse_toml(
        "[receiver]\nmax = 9223372036854775807\nmin = -9223372036854775808\n"
        "hex = 0x7fffffffffffffff\n",
        "t.toml");
    REQUIRE_MESSAGE(doc.ok(), doc.error().detail);
    CHECK(entry(doc->tables[0], "max").integer == std::numeric_limits<std::int64_t>::max());
    CHECK(entry(doc->tables[0], "min").integer == std::numeric_limits<std::int64_t>::min());
    CHECK(entry(doc->tables[0], "hex").integer == std::numeric_limits<std::int64_t>::max());

    // In 64 bits but out of a key's range: load_config says which key and what it takes.
    TempDir dir;
    const auto pending = load(dir, "[receiver]\nmax_pending = 9223372036854775807\n");
    CHECK_FALSE(pending.run);
    CHECK(pending.err.find("t.toml:2: max_pending: expected an integer from 1 to") !=
          std::string::npos);
    const auto seconds = load(dir, "[receiver]\nexec_timeout = 9223373372030730\n");
    CHECK_FALSE(seconds.run);
    CHECK(seconds.err.find("exec_timeout: bad duration 9223373372030730") != std::string::npos);
  }

  TEST_CASE("the sample configuration reads, and load_config takes every key of it") {
    const auto path = source_dir() / "samples/config/tdhook-receiver.toml";
    const auto doc = parse_toml(read_file(path), "tdhook-receiver.toml");
    REQUIRE_MESSAGE(doc.ok(), doc.error().detail);
    REQUIRE(doc->tables.size() == 3);
    CHECK(doc->tables[0].name == "receiver");
    CHECK(entry(doc->tables[0], "max_pending").integer == 100000);
    CHECK(entry(doc->tables[2], "events").items == std::vector<std::string>{"lead.create"});

    TempDir dir;
    const auto loaded = load(dir, read_file(path));
    REQUIRE_MESSAGE(loaded.run, loaded.err);
    CHECK(loaded.config.path == "/webhooks/tiledesk");
    CHECK(loaded.config.max_pending == 100000);
    REQUIRE(loaded.config.sinks.size() == 2);
    CHECK(loaded.config.sinks[1].retry_max == 12);
  }

  TEST_CASE("bytes that are not TOML come back as an error, never as an exception") {
    for (const std::string& text :
         {std::string("\xff\xfe[receiver]"), std::string("[receiver]\0x", 12), std::string("[[[["),
          std::string("a = {"), std::string("=")}) {
      CHECK_NOTHROW((void)parse_toml(text, "t.toml"));
      const auto doc = parse_toml(text, "t.toml");
      REQUIRE_FALSE(doc.ok());
      CHECK(doc.error().detail.starts_with("t.toml:"));
    }
  }
}
