// File-system helper of the replication bench (bench/replication.ts), compiled at bench time with
// `gcc -O2`. C rather than Python or Node so the loop itself costs a few hundred nanoseconds per file and
// the figure is the file system's, as in shared/reference/fuse-perf.md (smallfiles.c there).
//
//   fsbench-helper smallfiles DIR COUNT SIZE
//       mkdir DIR (it must not exist: a fresh directory each run), then COUNT times
//       open(O_CREAT|O_EXCL|O_WRONLY) + write(SIZE bytes) + fsync + close.
//       Prints {"files":COUNT,"seconds":S} (the loop only, mkdir excluded).
//   fsbench-helper dataset DIR FILES MIB
//       mkdir -p DIR, then FILES files d000..dNNN of MIB MiB each, written in 1 MiB pwrite()s of
//       pseudo-random data (generation 0), each file fsynced. Prints {"bytes":B,"seconds":S}.
//   fsbench-helper mutate DIR FILES EVERY GEN
//       In each file d000..d(FILES-1) of DIR, rewrites in place every 1 MiB block whose index is a multiple
//       of EVERY (0, EVERY, 2*EVERY, ...) with new pseudo-random data (generation GEN, so the bytes differ
//       from every earlier generation), then fsyncs the file. Prints {"bytes_changed":B,"blocks":N,"seconds":S}.
//
// The data is pseudo-random (xorshift64*), so nothing on the way can compress or deduplicate it.
// Exit 0 on success; 1 with a message on stderr on any failed call; 2 on bad usage.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path) {
  fprintf(stderr, "fsbench-helper: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static long arg_long(const char *s, const char *name) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 0) {
    fprintf(stderr, "fsbench-helper: %s: not a non-negative integer: %s\n", name, s);
    exit(2);
  }
  return v;
}

/* Fills buf (len a multiple of 8) with data that depends on (file, block, gen) only. */
static void fill(uint64_t *buf, size_t len, uint64_t file, uint64_t block, uint64_t gen) {
  uint64_t x = 0x9E3779B97F4A7C15ull ^ (file << 40) ^ (block << 8) ^ (gen * 0xD1B54A32D192ED03ull);
  if (x == 0) x = 1;
  for (size_t i = 0; i < len / 8; i++) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    buf[i] = x * 0x2545F4914F6CDD1Dull;
  }
}

static void write_all(int fd, const void *buf, size_t len, off_t off, const char *path) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("pwrite", path);
    }
    p += n;
    off += n;
    len -= (size_t)n;
  }
}

static int smallfiles(const char *dir, long count, long size) {
  char *buf = malloc((size_t)size ? (size_t)size : 1);
  if (!buf) die("malloc", "");
  memset(buf, 'x', (size_t)size);
  if (mkdir(dir, 0755) != 0) die("mkdir", dir);
  char path[4096];
  double t0 = now_s();
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/f%06ld", dir, i);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) die("open", path);
    write_all(fd, buf, (size_t)size, 0, path);
    if (fsync(fd) != 0) die("fsync", path);
    if (close(fd) != 0) die("close", path);
  }
  double t1 = now_s();
  printf("{\"files\":%ld,\"seconds\":%.6f}\n", count, t1 - t0);
  free(buf);
  return 0;
}

static int dataset(const char *dir, long files, long mib) {
  uint64_t *buf = malloc(MIB);
  if (!buf) die("malloc", "");
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("mkdir", dir);
  char path[4096];
  double t0 = now_s();
  for (long f = 0; f < files; f++) {
    snprintf(path, sizeof path, "%s/d%03ld", dir, f);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) die("open", path);
    for (long b = 0; b < mib; b++) {
      fill(buf, MIB, (uint64_t)f, (uint64_t)b, 0);
      write_all(fd, buf, MIB, (off_t)b * MIB, path);
    }
    if (fsync(fd) != 0) die("fsync", path);
    if (close(fd) != 0) die("close", path);
  }
  double t1 = now_s();
  printf("{\"bytes\":%lld,\"seconds\":%.6f}\n", (long long)files * mib * MIB, t1 - t0);
  free(buf);
  return 0;
}

static int mutate(const char *dir, long files, long every, long gen) {
  if (every < 1) {
    fprintf(stderr, "fsbench-helper: EVERY must be >= 1\n");
    return 2;
  }
  uint64_t *buf = malloc(MIB);
  if (!buf) die("malloc", "");
  char path[4096];
  long long changed = 0, blocks = 0;
  double t0 = now_s();
  for (long f = 0; f < files; f++) {
    snprintf(path, sizeof path, "%s/d%03ld", dir, f);
    int fd = open(path, O_WRONLY);
    if (fd < 0) die("open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat", path);
    long nblocks = (long)(st.st_size / MIB);
    for (long b = 0; b < nblocks; b += every) {
      fill(buf, MIB, (uint64_t)f, (uint64_t)b, (uint64_t)gen);
      write_all(fd, buf, MIB, (off_t)b * MIB, path);
      changed += MIB;
      blocks++;
    }
    if (fsync(fd) != 0) die("fsync", path);
    if (close(fd) != 0) die("close", path);
  }
  double t1 = now_s();
  printf("{\"bytes_changed\":%lld,\"blocks\":%lld,\"seconds\":%.6f}\n", changed, blocks, t1 - t0);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "smallfiles") == 0) return smallfiles(argv[2], arg_long(argv[3], "COUNT"), arg_long(argv[4], "SIZE"));
  if (argc == 5 && strcmp(argv[1], "dataset") == 0) return dataset(argv[2], arg_long(argv[3], "FILES"), arg_long(argv[4], "MIB"));
  if (argc == 6 && strcmp(argv[1], "mutate") == 0)
    return mutate(argv[2], arg_long(argv[3], "FILES"), arg_long(argv[4], "EVERY"), arg_long(argv[5], "GEN"));
  fprintf(stderr,
          "usage: fsbench-helper smallfiles DIR COUNT SIZE\n"
          "       fsbench-helper dataset DIR FILES MIB\n"
          "       fsbench-helper mutate DIR FILES EVERY GEN\n");
  return 2;
}
