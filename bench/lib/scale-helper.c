// File-set helper of the scale bench (bench/scale.ts), compiled at bench time with `gcc -O2`: a million
// files are made in seconds by a tight C loop, where a script would take minutes and measure itself.
//
// Layout of a set of FILES files, PERDIR per directory: ROOT/gGG/dDDDD/fFFFF, file i in directory
// d = i / PERDIR, group g = d / 100 (depth 3, fan-out 100 groups x 100 directories x PERDIR files), plus
// LARGE files ROOT/large/bigN of LARGE_MIB MiB each.
//
//   scale-helper create ROOT FILES PERDIR LARGE LARGE_MIB AGE_S
//       Creates the set under ROOT (which must exist). File i holds (hash(i) % 4097) bytes of pseudo-random
//       data (0..4 KiB); every object's mtime is AGE_S seconds ago, minus up to a day: an old data set, as a
//       module's data usually is (a reintegration after a crash compares files modified since the last sync
//       minus 1 h: a fresh set would have them all). Ends with syncfs. Prints
//       {"files":F,"dirs":D,"bytes":B,"seconds":S}.
//   scale-helper change ROOT FILES PERDIR NCHANGE NCREATE NREMOVE NRENAME GEN
//       Changes an existing set (through whatever ROOT is: the bench passes the replicated mount): rewrites
//       the first 512 bytes of NCHANGE files, creates NCREATE files of 1 KiB, removes NREMOVE files and
//       renames NRENAME files within their directory (to fFFFF.rGEN). The files are picked by a hash of
//       (GEN, operation, k) and missing ones (removed or renamed by an earlier GEN) are skipped, so every GEN
//       touches other files. Prints {"changed":N,"created":N,"removed":N,"renamed":N,"skipped":N,
//       "bytes_written":B,"seconds":S}.
//
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
#define MAX_SMALL 4096
#define DIRS_PER_GROUP 100

static uint64_t mix(uint64_t x) {
  // splitmix64: a stateless hash, so file i's size and choice do not depend on the order of the loop.
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static void fill(unsigned char *buf, size_t n, uint64_t seed) {
  uint64_t s = mix(seed) | 1;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    uint64_t v = s * 2685821657736338717ULL;
    memcpy(buf + i, &v, 8);
  }
  for (size_t i = n & ~(size_t)7; i < n; i++) buf[i] = (unsigned char)mix(seed + i);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, const char *path) {
  fprintf(stderr, "scale-helper: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void dir_path(char *out, size_t n, const char *root, long d) {
  snprintf(out, n, "%s/g%02ld/d%04ld", root, d / DIRS_PER_GROUP, d);
}

static void file_path(char *out, size_t n, const char *root, long i, long perdir) {
  char d[4096];
  dir_path(d, sizeof d, root, i / perdir);
  snprintf(out, n, "%s/f%04ld", d, i % perdir);
}

static void mkdir_p_one(const char *p) {
  if (mkdir(p, 0755) != 0 && errno != EEXIST) die("mkdir", p);
}

static void set_mtime(int fd, const char *path, time_t t) {
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  if (path ? utimensat(AT_FDCWD, path, ts, 0) != 0 : futimens(fd, ts) != 0) die("utimens", path ? path : "(fd)");
}

static int create_set(const char *root, long files, long perdir, long large, long large_mib, long age_s) {
  static unsigned char buf[MIB];
  char p[4096];
  double t0 = now_s();
  time_t base = time(NULL) - age_s;
  long ndirs = (files + perdir - 1) / perdir;
  uint64_t bytes = 0;
  fill(buf, sizeof buf, 1);
  for (long d = 0; d < ndirs; d++) {
    if (d % DIRS_PER_GROUP == 0) {
      snprintf(p, sizeof p, "%s/g%02ld", root, d / DIRS_PER_GROUP);
      mkdir_p_one(p);
    }
    dir_path(p, sizeof p, root, d);
    mkdir_p_one(p);
  }
  for (long i = 0; i < files; i++) {
    file_path(p, sizeof p, root, i, perdir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", p);
    size_t size = (size_t)(mix((uint64_t)i) % (MAX_SMALL + 1));
    // Contents differ from file to file: a window of the random buffer at a per-file offset.
    size_t at = (size_t)(mix((uint64_t)i + 77) % (sizeof buf - MAX_SMALL));
    if (size && write(fd, buf + at, size) != (ssize_t)size) die("write", p);
    set_mtime(fd, NULL, base - (time_t)(mix((uint64_t)i + 5) % 86400));
    close(fd);
    bytes += size;
  }
  if (large > 0) {
    snprintf(p, sizeof p, "%s/large", root);
    mkdir_p_one(p);
  }
  for (long k = 0; k < large; k++) {
    snprintf(p, sizeof p, "%s/large/big%ld", root, k);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", p);
    for (long m = 0; m < large_mib; m++) {
      fill(buf, sizeof buf, (uint64_t)(k * 1000003 + m));
      if (pwrite(fd, buf, MIB, (off_t)m * MIB) != MIB) die("pwrite", p);
    }
    set_mtime(fd, NULL, base);
    close(fd);
    bytes += (uint64_t)large_mib * MIB;
  }
  // Directories last: making their entries moved their mtimes.
  for (long d = 0; d < ndirs; d++) {
    dir_path(p, sizeof p, root, d);
    set_mtime(-1, p, base);
  }
  int rfd = open(root, O_RDONLY | O_DIRECTORY);
  if (rfd < 0 || syncfs(rfd) != 0) die("syncfs", root);
  close(rfd);
  printf("{\"files\":%ld,\"dirs\":%ld,\"large_files\":%ld,\"bytes\":%llu,\"seconds\":%.3f}\n", files, ndirs, large, (unsigned long long)bytes, now_s() - t0);
  return 0;
}

static int change_set(const char *root, long files, long perdir, long nchange, long ncreate, long nremove, long nrename, long gen) {
  unsigned char data[1024];
  char p[4096], q[4096];
  double t0 = now_s();
  long changed = 0, created = 0, removed = 0, renamed = 0, skipped = 0;
  uint64_t written = 0;
  long ndirs = (files + perdir - 1) / perdir;
  fill(data, sizeof data, (uint64_t)gen * 7919);
  for (long k = 0; k < nchange; k++) {
    file_path(p, sizeof p, root, (long)(mix(((uint64_t)gen << 40) | (1ULL << 32) | (uint64_t)k) % (uint64_t)files), perdir);
    int fd = open(p, O_WRONLY);
    if (fd < 0) {
      if (errno == ENOENT) { skipped++; continue; }
      die("open", p);
    }
    if (pwrite(fd, data, 512, 0) != 512) die("pwrite", p);
    close(fd);
    changed++;
    written += 512;
  }
  for (long k = 0; k < ncreate; k++) {
    char d[4096];
    dir_path(d, sizeof d, root, (long)(mix(((uint64_t)gen << 40) | (2ULL << 32) | (uint64_t)k) % (uint64_t)ndirs));
    snprintf(p, sizeof p, "%s/new-%ld-%ld", d, gen, k);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", p);
    if (write(fd, data, sizeof data) != (ssize_t)sizeof data) die("write", p);
    close(fd);
    created++;
    written += sizeof data;
  }
  for (long k = 0; k < nremove; k++) {
    file_path(p, sizeof p, root, (long)(mix(((uint64_t)gen << 40) | (3ULL << 32) | (uint64_t)k) % (uint64_t)files), perdir);
    if (unlink(p) != 0) {
      if (errno == ENOENT) { skipped++; continue; }
      die("unlink", p);
    }
    removed++;
  }
  for (long k = 0; k < nrename; k++) {
    file_path(p, sizeof p, root, (long)(mix(((uint64_t)gen << 40) | (4ULL << 32) | (uint64_t)k) % (uint64_t)files), perdir);
    snprintf(q, sizeof q, "%s.r%ld", p, gen);
    if (rename(p, q) != 0) {
      if (errno == ENOENT) { skipped++; continue; }
      die("rename", p);
    }
    renamed++;
  }
  printf("{\"changed\":%ld,\"created\":%ld,\"removed\":%ld,\"renamed\":%ld,\"skipped\":%ld,\"bytes_written\":%llu,\"seconds\":%.3f}\n", changed, created, removed, renamed, skipped, (unsigned long long)written, now_s() - t0);
  return 0;
}

static long num(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0) {
    fprintf(stderr, "scale-helper: not a non-negative integer: %s\n", s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc == 8 && strcmp(argv[1], "create") == 0) {
    long perdir = num(argv[4]);
    if (perdir == 0) return fprintf(stderr, "scale-helper: PERDIR must be > 0\n"), 2;
    return create_set(argv[2], num(argv[3]), perdir, num(argv[5]), num(argv[6]), num(argv[7]));
  }
  if (argc == 10 && strcmp(argv[1], "change") == 0) {
    long files = num(argv[3]), perdir = num(argv[4]);
    if (files == 0 || perdir == 0) return fprintf(stderr, "scale-helper: FILES and PERDIR must be > 0\n"), 2;
    return change_set(argv[2], files, perdir, num(argv[5]), num(argv[6]), num(argv[7]), num(argv[8]), num(argv[9]));
  }
  fprintf(stderr,
          "usage: scale-helper create ROOT FILES PERDIR LARGE LARGE_MIB AGE_S\n"
          "       scale-helper change ROOT FILES PERDIR NCHANGE NCREATE NREMOVE NRENAME GEN\n");
  return 2;
}
