// The delivery check of bench/run.sh: polls FILE's line count until it reaches TARGET (the 2xx
// answers wrk counted) or TIMEOUT_MS have passed since T_END_NS (CLOCK_REALTIME ns, `date +%s%N`
// when wrk ended). Counts incrementally (only what was appended since the last look), every
// 5 ms. Then, untimed, counts the distinct record ids among those lines (a record of tdhook's file
// sink starts with its id: its first 48 bytes). Prints "LINES DISTINCT MS": MS is the time from
// T_END_NS to the look that saw TARGET lines, or TIMEOUT_MS when none did.
// Usage: sinkwait FILE TARGET T_END_NS TIMEOUT_MS      (bench/lib.sh builds it with g++ -O2)
//        sinkwait FILE        follows FILE while the load runs (a look every 200 ms, so that the
//                             timed part only counts the last lines) until "TARGET T_END_NS
//                             TIMEOUT_MS" comes on stdin; exits 3 at end of stdin without it.
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

static long long now_ns() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static std::vector<char> buf(1 << 22);
static off_t off = 0;
static long long lines = 0;

// Counts the newlines appended to path since the last look.
static void look(const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  ssize_t r;
  while ((r = pread(fd, buf.data(), buf.size(), off)) > 0) {
    for (const char *p = buf.data(), *e = p + r; (p = (const char*)memchr(p, '\n', e - p)); ++p) ++lines;
    off += r;
  }
  close(fd);
}

int main(int argc, char** argv) {
  if (argc != 5 && argc != 2) {
    fprintf(stderr, "usage: sinkwait FILE TARGET T_END_NS TIMEOUT_MS | sinkwait FILE <<< 'TARGET T_END_NS TIMEOUT_MS'\n");
    return 2;
  }
  const char* path = argv[1];
  long long target, t_end, timeout;
  if (argc == 5) {
    target = atoll(argv[2]), t_end = atoll(argv[3]), timeout = atoll(argv[4]);
  } else {
    std::string in;
    for (;;) {
      pollfd p{0, POLLIN, 0};
      if (poll(&p, 1, 200) > 0) {
        char b[256];
        ssize_t r = read(0, b, sizeof b);
        if (r <= 0) return 3;
        in.append(b, r);
        if (in.find('\n') != std::string::npos) break;
      }
      look(path);
    }
    if (sscanf(in.c_str(), "%lld %lld %lld", &target, &t_end, &timeout) != 3) return 2;
  }
  long long ms = timeout, deadline = t_end + timeout * 1000000LL;
  for (;;) {
    look(path);
    long long now = now_ns();
    if (lines >= target) {
      ms = now > t_end ? (now - t_end) / 1000000 : 0;
      break;
    }
    if (now >= deadline) break;
    usleep(5000);
  }
  // Untimed: distinct ids among the first LINES lines.
  std::unordered_set<std::string> ids;
  if (FILE* f = fopen(path, "rb")) {
    std::string line;
    long long n = 0;
    int c;
    while (n < lines && (c = getc_unlocked(f)) != EOF) {
      if (c == '\n') {
        ids.insert(line);
        line.clear();
        ++n;
      } else if (line.size() < 48) {
        line.push_back((char)c);
      }
    }
    fclose(f);
  }
  printf("%lld %zu %lld\n", lines, ids.size(), ms);
}
