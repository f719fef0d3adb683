/* tcpbench: tiny TCP latency helper for Berth's benchmarks (sandbox netns only; from ../shared/bench-peers).
 *
 *   tcpbench server IP PORT            accept loop; each accepted socket is closed at once
 *   tcpbench echo   IP PORT            echo server (one connection at a time)
 *   tcpbench connect IP PORT COUNT [SRCIP]
 *        COUNT sequential connects (blocking connect(), then close with SO_LINGER 0 => RST,
 *        so no TIME_WAIT and every connect is a fresh SYN through netfilter/conntrack).
 *        Prints: conns=.. secs=.. rate=.. (conn/s) p50_us p90_us p99_us min_us max_us failures
 *   tcpbench rr IP PORT COUNT
 *        One connection, COUNT 1-byte request/response round trips (like netperf TCP_RR).
 *        Prints: trans=.. secs=.. rate=.. (trans/s) p50_us p90_us p99_us min_us max_us
 * Runs are bounded by COUNT; each connect has a 2 s timeout (SO_SNDTIMEO).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
  if (n <= 0) return 0;
  int k = (int)((n - 1) * p + 0.5);
  return v[k];
}

static void mkaddr(struct sockaddr_in *sa, const char *ip, int port) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
    fprintf(stderr, "bad ip %s\n", ip);
    exit(2);
  }
}

static int listen_on(const char *ip, int port) {
  struct sockaddr_in sa;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  mkaddr(&sa, ip, port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
    perror("bind/listen");
    exit(1);
  }
  return fd;
}

static void report(const char *what, double *lat, int n, double secs, int fails) {
  qsort(lat, n, sizeof *lat, cmpd);
  printf("%s=%d secs=%.4f rate=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f min_us=%.1f max_us=%.1f failures=%d\n",
         what, n, secs, n / secs, pct(lat, n, .5) * 1e6, pct(lat, n, .9) * 1e6, pct(lat, n, .99) * 1e6,
         n ? lat[0] * 1e6 : 0, n ? lat[n - 1] * 1e6 : 0, fails);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 4) {
    fprintf(stderr, "usage: see source\n");
    return 2;
  }
  const char *mode = argv[1], *ip = argv[2];
  int port = atoi(argv[3]);
  if (!strcmp(mode, "server")) {
    int lfd = listen_on(ip, port);
    for (;;) {
      int c = accept(lfd, NULL, NULL);
      if (c >= 0) close(c);
    }
  }
  if (!strcmp(mode, "echo")) {
    int lfd = listen_on(ip, port);
    char buf[64];
    for (;;) {
      int c = accept(lfd, NULL, NULL);
      if (c < 0) continue;
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ssize_t r;
      while ((r = read(c, buf, sizeof buf)) > 0)
        if (write(c, buf, r) != r) break;
      close(c);
    }
  }
  if (argc < 5) return 2;
  int count = atoi(argv[4]);
  double *lat = calloc(count, sizeof(double));
  struct sockaddr_in dst;
  mkaddr(&dst, ip, port);
  if (!strcmp(mode, "connect")) {
    struct sockaddr_in src;
    int have_src = argc > 5;
    if (have_src) mkaddr(&src, argv[5], 0);
    struct timeval tmo = {2, 0};
    struct linger lg = {1, 0};
    int n = 0, fails = 0, one = 1;
    double t0 = now_s();
    for (int i = 0; i < count; i++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
      if (have_src) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) perror("bind");
      }
      double a = now_s();
      int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
      double b = now_s();
      if (r == 0)
        lat[n++] = b - a;
      else
        fails++;
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(fd);
    }
    report("conns", lat, n, now_s() - t0, fails);
    return fails ? 1 : 0;
  }
  if (!strcmp(mode, "rr")) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
      perror("connect");
      return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char c = 'x';
    double t0 = now_s();
    int n = 0;
    for (int i = 0; i < count; i++) {
      double a = now_s();
      if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) break;
      lat[n++] = now_s() - a;
    }
    report("trans", lat, n, now_s() - t0, count - n);
    close(fd);
    return 0;
  }
  return 2;
}
