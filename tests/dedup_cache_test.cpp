// The receiver's in-memory cache of recently committed de-duplication keys.
#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "store/dedup_cache.hpp"

using tdhook::receiver::DedupCache;
using namespace std::chrono_literals;

TEST_SUITE("dedup cache") {
  TEST_CASE("a remembered key is found within the window, and not after it") {
    DedupCache cache(64, 1000ms);
    CHECK_FALSE(cache.find("k", 5000));
    cache.remember("k", "id-1", 5000);
    CHECK(cache.find("k", 5000) == std::string("id-1"));
    CHECK(cache.find("k", 6000) == std::string("id-1"));  // the spool's rule: >= now - window
    CHECK_FALSE(cache.find("k", 6001));
    CHECK_FALSE(cache.find("other", 5000));
  }

  TEST_CASE("a key stored again after its window names the newer occurrence") {
    DedupCache cache(64, 1000ms);
    cache.remember("k", "id-1", 0);
    cache.remember("k", "id-2", 5000);
    CHECK(cache.find("k", 5500) == std::string("id-2"));
    CHECK(cache.size() == 1);
  }

  TEST_CASE("the cache forgets its oldest keys beyond its capacity") {
    DedupCache cache(64, 3600s);
    for (int i = 0; i < 1000; ++i) cache.remember("key-" + std::to_string(i), "id", 1);
    CHECK(cache.size() <= 64);
    CHECK(cache.size() >= 8);
    // The newest key of every shard is still there; the very first ones are gone.
    CHECK(cache.find("key-999", 1));
    CHECK_FALSE(cache.find("key-0", 1));
  }

  TEST_CASE("loops looking up while the writer remembers see whole entries") {
    DedupCache cache(4096, 3600s);
    std::thread writer([&] {
      for (int i = 0; i < 20000; ++i) cache.remember("key-" + std::to_string(i % 3000), "id", 1);
    });
    int found = 0, wrong = 0;
    for (int i = 0; i < 20000; ++i) {
      if (auto id = cache.find("key-" + std::to_string(i % 3000), 1)) {
        ++found;
        if (*id != "id") ++wrong;
      }
    }
    writer.join();
    CHECK(wrong == 0);
    CHECK(cache.find("key-2999", 1));
    MESSAGE("hits while writing: " << found);
  }
}
