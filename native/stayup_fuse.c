/*
 * stayup_fuse: the interception layer of synchronous file replication (see src/replication/README.md).
 *
 * A passthrough file system over libfuse3's low-level API. C does all the file system work on libfuse's
 * worker threads: lookups, attributes, reads and the local application of every mutation, relative to
 * O_PATH descriptors of the real directory (opened before FUSE was mounted over it). A successful mutation
 * is then handed to JavaScript as one event through a napi_threadsafe_function, and the kernel request
 * stays pending until JavaScript calls reply(). The local operation and the enqueueing of its event happen
 * under the mount's order lock, so JavaScript sees the events in the order the real file system applied
 * them: that order is the replication order.
 *
 * The same addon exports the synchronous helpers the receiving side uses to apply events beneath a root
 * directory (openat2 with RESOLVE_BENEATH, so a hostile or buggy path cannot leave the replicated tree).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>

#include <fuse_lowlevel.h>
#include <node_api.h>
#include "napi_util.h"

extern char **environ;

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 0x00000008
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
/* <linux/mount.h> clashes with glibc 2.36's <sys/mount.h>: the two definitions mount_setattr needs */
struct sf_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define SF_MOUNT_ATTR_RDONLY 0x00000001

#define MAX_WRITE_BYTES (1u << 20)
#define DELETED_SUFFIX " (deleted)"
/* A last-resort search for another name of a hard-linked file gives up after this many entries. */
#define SCAN_MAX_ENTRIES 200000

/* ------------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

static inline int64_t ts_ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec; }

static inline struct timespec ns_ts(int64_t ns)
{
	struct timespec t;
	t.tv_sec = ns / 1000000000LL;
	t.tv_nsec = ns % 1000000000LL;
	if (t.tv_nsec < 0) { /* times before 1970 */
		t.tv_nsec += 1000000000LL;
		t.tv_sec -= 1;
	}
	return t;
}

static inline void proc_fd_path(char buf[40], int fd) { snprintf(buf, 40, "/proc/self/fd/%d", fd); }

/* Per-thread scratch memory (read replies, xattr values, directory listings, paths), so the hot paths do
 * not allocate. Freed by a thread-specific-data destructor when a libfuse worker thread ends. */
struct scratch {
	char *buf;
	size_t cap;
	char *path;  /* 2 * PATH_MAX */
	char *path2; /* 2 * PATH_MAX */
	int fs_private;
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread struct scratch *tls_scratch;

static void scratch_free(void *p)
{
	struct scratch *s = p;
	free(s->buf);
	free(s->path);
	free(s->path2);
	free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static struct scratch *scratch(void)
{
	if (tls_scratch) return tls_scratch;
	pthread_once(&scratch_once, scratch_key_init);
	struct scratch *s = calloc(1, sizeof *s);
	if (!s) return NULL;
	s->path = malloc(2 * PATH_MAX);
	s->path2 = malloc(2 * PATH_MAX);
	if (!s->path || !s->path2) {
		scratch_free(s);
		return NULL;
	}
	pthread_setspecific(scratch_key, s);
	tls_scratch = s;
	return s;
}

static char *scratch_buf(size_t n)
{
	struct scratch *s = scratch();
	if (!s) return NULL;
	if (s->cap < n) {
		char *b = realloc(s->buf, n);
		if (!b) return NULL;
		s->buf = b;
		s->cap = n;
	}
	return s->buf;
}

/* New objects must get exactly the mode the caller asked for. The kernel already applied the caller's
 * umask before the request reached us; the daemon's own umask must not apply a second time. umask is per
 * fs_struct, so each worker thread unshares its fs_struct once and sets umask 0 for itself only. */
static int thread_umask_zero(void)
{
	struct scratch *s = scratch();
	if (!s) return 0;
	if (!s->fs_private) {
		if (unshare(CLONE_FS) == 0) {
			umask(0);
			s->fs_private = 1;
		} else {
			s->fs_private = -1; /* fall back to fixing the mode after creation */
		}
	}
	return s->fs_private == 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Data structures                                                                                  */
/* ------------------------------------------------------------------------------------------------ */

struct sf_mount;
struct sf_handle;

typedef struct sf_inode {
	struct sf_inode *hnext;
	int fd;        /* O_PATH; replaced (never closed early) when its name vanished, see path_of() */
	mode_t type;   /* S_IFMT bits */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup; /* the kernel's references (itab_lock) */
	uint32_t pins;    /* our own temporary references (itab_lock) */
	struct sf_handle *whandles; /* replicated handles open on this inode (itab_lock) */
	int *retired;               /* former O_PATH fds, closed with the inode (itab_lock) */
	uint32_t nretired;
	/* For hard-linked files: the last name the kernel was given for this inode (itab_lock). */
	char *alias_name;
	dev_t alias_pdev;
	ino_t alias_pino;
} sf_inode;

typedef struct sf_handle {
	int fd;
	uint64_t id;      /* replication handle number; 0 = not replicated (read-only open) */
	sf_inode *inode;
	struct sf_handle *inext, *iprev; /* in inode->whandles */
	struct sf_handle *mnext, *mprev; /* in mount->handles: everything still open, closed at unmount */
	/* directory handles */
	int is_dir;
	off_t dpos;
	int dlen, doff;
	char *dbuf;
} sf_handle;

enum { ST_OPEN = 0, ST_CLOSED = 1 };

typedef struct sf_mount {
	char *path; /* canonical mount point */
	char *name;
	int root_fd;
	sf_inode root;
	char fuse_devid[32]; /* "major:minor" of our FUSE super block, from mountinfo */

	pthread_mutex_t itab_lock; /* inode table, nlookup, pins, handle lists */
	sf_inode **buckets;
	size_t nbuckets, ninodes;
	sf_handle *handles;

	/* The order lock: a mutation is applied locally and its event enqueued while holding it. */
	pthread_mutex_t order_lock;
	int stopping;          /* under order_lock: new mutations are answered EIO */
	uint64_t next_handle;  /* under order_lock */
	char *root_prefix;     /* readlink of root_fd, under order_lock */
	size_t root_prefix_len;

	struct fuse_session *se;
	pthread_t thread;
	int thread_started;
	volatile int stop_requested;
	int loop_rc;
	int comm_fd;          /* our end of fusermount3's auto_unmount socket */
	pid_t fusermount_pid;

	napi_env env;
	napi_threadsafe_function tsfn;
	napi_ref on_exit;
	int state; /* JS thread only */
	int refs;  /* JS thread only: the External and the threadsafe function */
	int read_only; /* the read-only switch (atomic): mutations are answered EROFS by C */
	int no_xattrs; /* extended attributes refused (ENOSYS): see js_mount */
	unsigned threads;
	/* How long the kernel may cache attributes and names while the mount is writable (only this mount
	 * changes the tree then); a read-only mount (the secondary, written underneath) caches nothing. */
	double attr_timeout, entry_timeout;
	/* 0: namespace and attribute changes that change no file data are answered by C once applied and
	 * queued (their events carry job 0); 1 (default): every mutation waits for JavaScript's reply. */
	int hold_metadata;

	/* statistics (order_lock) */
	uint64_t st_events, st_writes, st_write_bytes;

	struct sf_mount *next_live;
} sf_mount;

/* Event kinds (the `op` of the JavaScript event) */
enum {
	EV_OPEN = 1, EV_CREATE, EV_WRITE, EV_RELEASE, EV_MKNOD, EV_MKDIR, EV_SYMLINK, EV_LINK, EV_UNLINK,
	EV_RMDIR, EV_RENAME, EV_SETATTR, EV_FALLOCATE, EV_SETXATTR, EV_REMOVEXATTR, EV_FSYNC, EV_FSYNCDIR,
	EV_EXIT
};
/* How C answers the kernel once JavaScript replied */
enum { R_NONE = 0, R_ERR, R_WRITE, R_ATTR, R_ENTRY, R_OPEN, R_CREATE };

/* Optional fields present in an event */
#define F_MODE (1u << 0)
#define F_UID (1u << 1)
#define F_GID (1u << 2)
#define F_SIZE (1u << 3)
#define F_ATIME (1u << 4)
#define F_MTIME (1u << 5)
#define F_HANDLE (1u << 6)
#define F_PATH (1u << 7)

typedef struct sf_job {
	uint64_t id; /* 0 while free */
	uint32_t next_free;
	uint32_t gen;
	sf_mount *m;
	fuse_req_t req;
	uint8_t kind, reply_kind, delivered, replied;
	int deferred_err; /* a partial setattr: replicate what was applied, answer this errno */
	sf_inode *inode;  /* entry replies: the lookup to undo if the answer is an error */
	sf_handle *h;     /* open/create: the handle to close if the answer is an error */
	struct fuse_entry_param e; /* entry replies; e.attr also for R_ATTR */
	struct fuse_file_info fi;
	size_t count; /* R_WRITE */
	/* event fields */
	uint64_t handle;
	char *path, *path2; /* malloc'd; path == NULL with F_PATH = the object has no name */
	char *name;
	void *data; /* write payload or xattr value (malloc'd, handed to JS) */
	size_t len;
	int64_t offset, length, size, atime, mtime;
	uint32_t flags, mode, uid, gid, fields;
	uint64_t rdev;
	int datasync;
	/* fsync/fsyncdir: the local sync runs while the event is on its way. parts counts what is still to
	 * come (JavaScript's reply, the local sync, atomically); the last one answers the kernel. */
	int parts;
	uint8_t js_replied;
	int js_err, local_err;
} sf_job;

/* ------------------------------------------------------------------------------------------------ */
/* Jobs: a global slot table. A job id is (generation << JOB_IDX_BITS | slot), so a stale or forged id   */
/* from JavaScript is recognised and refused, and slots are reused without allocating.               */
/* ------------------------------------------------------------------------------------------------ */

#define JOB_IDX_BITS 20
#define JOB_CHUNK 256
#define JOB_MAX_SLOTS (1u << JOB_IDX_BITS)
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static sf_job *job_chunks[JOB_MAX_SLOTS / JOB_CHUNK];
static uint32_t job_nslots;
static uint32_t job_free_head = UINT32_MAX;

static inline sf_job *job_slot(uint32_t idx) { return &job_chunks[idx / JOB_CHUNK][idx % JOB_CHUNK]; }

static sf_job *job_alloc(sf_mount *m, fuse_req_t req, int kind, int reply_kind)
{
	pthread_mutex_lock(&jobs_lock);
	if (job_free_head == UINT32_MAX) {
		if (job_nslots >= JOB_MAX_SLOTS) {
			pthread_mutex_unlock(&jobs_lock);
			return NULL;
		}
		sf_job *chunk = calloc(JOB_CHUNK, sizeof(sf_job));
		if (!chunk) {
			pthread_mutex_unlock(&jobs_lock);
			return NULL;
		}
		job_chunks[job_nslots / JOB_CHUNK] = chunk;
		for (uint32_t i = 0; i < JOB_CHUNK; i++) {
			chunk[i].next_free = (i + 1 < JOB_CHUNK) ? job_nslots + i + 1 : UINT32_MAX;
		}
		job_free_head = job_nslots;
		job_nslots += JOB_CHUNK;
	}
	uint32_t idx = job_free_head;
	sf_job *j = job_slot(idx);
	job_free_head = j->next_free;
	uint32_t gen = j->gen + 1;
	memset(j, 0, sizeof *j);
	j->gen = gen;
	j->id = ((uint64_t)gen << JOB_IDX_BITS) | idx;
	pthread_mutex_unlock(&jobs_lock);
	j->m = m;
	j->req = req;
	j->kind = (uint8_t)kind;
	j->reply_kind = (uint8_t)reply_kind;
	return j;
}

/* Frees what the event still owns (never handed to JS) and returns the slot. */
static void job_free(sf_job *j)
{
	free(j->path);
	free(j->path2);
	free(j->name);
	free(j->data);
	pthread_mutex_lock(&jobs_lock);
	uint32_t idx = (uint32_t)(j->id & (JOB_MAX_SLOTS - 1));
	uint32_t gen = j->gen;
	memset(j, 0, sizeof *j);
	j->gen = gen;
	j->next_free = job_free_head;
	job_free_head = idx;
	pthread_mutex_unlock(&jobs_lock);
}

static sf_job *job_find(uint64_t id)
{
	uint32_t idx = (uint32_t)(id & (JOB_MAX_SLOTS - 1));
	sf_job *j = NULL;
	pthread_mutex_lock(&jobs_lock);
	if (id != 0 && idx < job_nslots) {
		sf_job *c = job_slot(idx);
		if (c->id == id) j = c;
	}
	pthread_mutex_unlock(&jobs_lock);
	return j;
}

/* ------------------------------------------------------------------------------------------------ */
/* Inode table                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

static inline sf_mount *req_mount(fuse_req_t req) { return (sf_mount *)fuse_req_userdata(req); }

static inline sf_inode *get_inode(sf_mount *m, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID) return &m->root;
	return (sf_inode *)(uintptr_t)ino;
}

static inline int inode_fd(sf_inode *in) { return __atomic_load_n(&in->fd, __ATOMIC_ACQUIRE); }

/* Cache timeouts for a reply: the mount's while writable, none while read-only (see sf_mount). */
static inline double attr_ttl(sf_mount *m)
{
	return __atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE) ? 0 : m->attr_timeout;
}
static inline double entry_ttl(sf_mount *m)
{
	return __atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE) ? 0 : m->entry_timeout;
}

static inline size_t hash_key(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
	return (size_t)(h ^ (h >> 29));
}

/* itab_lock held */
static sf_inode *itab_find(sf_mount *m, dev_t dev, ino_t ino)
{
	sf_inode *in = m->buckets[hash_key(dev, ino) & (m->nbuckets - 1)];
	while (in && !(in->ino == ino && in->dev == dev)) in = in->hnext;
	return in;
}

/* itab_lock held */
static void itab_insert(sf_mount *m, sf_inode *in)
{
	if (m->ninodes + 1 > m->nbuckets) {
		size_t nb = m->nbuckets * 2;
		sf_inode **b = calloc(nb, sizeof *b);
		if (b) {
			for (size_t i = 0; i < m->nbuckets; i++) {
				sf_inode *x = m->buckets[i];
				while (x) {
					sf_inode *nx = x->hnext;
					size_t k = hash_key(x->dev, x->ino) & (nb - 1);
					x->hnext = b[k];
					b[k] = x;
					x = nx;
				}
			}
			free(m->buckets);
			m->buckets = b;
			m->nbuckets = nb;
		}
	}
	size_t k = hash_key(in->dev, in->ino) & (m->nbuckets - 1);
	in->hnext = m->buckets[k];
	m->buckets[k] = in;
	m->ninodes++;
}

/* itab_lock held */
static void itab_remove(sf_mount *m, sf_inode *in)
{
	sf_inode **p = &m->buckets[hash_key(in->dev, in->ino) & (m->nbuckets - 1)];
	while (*p && *p != in) p = &(*p)->hnext;
	if (*p) {
		*p = in->hnext;
		m->ninodes--;
	}
}

static void inode_destroy(sf_inode *in)
{
	close(in->fd);
	for (uint32_t i = 0; i < in->nretired; i++) close(in->retired[i]);
	free(in->retired);
	free(in->alias_name);
	free(in);
}

/* Drops n kernel lookups (forget) or one pin; the inode goes when neither remains. */
static void inode_unref(sf_mount *m, sf_inode *in, uint64_t nlookup, uint32_t pins)
{
	if (in == &m->root) return;
	int gone = 0;
	pthread_mutex_lock(&m->itab_lock);
	in->nlookup = in->nlookup > nlookup ? in->nlookup - nlookup : 0;
	in->pins = in->pins > pins ? in->pins - pins : 0;
	if (in->nlookup == 0 && in->pins == 0) {
		itab_remove(m, in);
		gone = 1;
	}
	pthread_mutex_unlock(&m->itab_lock);
	if (gone) inode_destroy(in);
}

/* Replaces an inode's O_PATH fd with one for a name that still exists. The old fd may be in use by a
 * concurrent operation, so it is kept open until the inode goes. */
static void inode_swap_fd(sf_mount *m, sf_inode *in, int newfd)
{
	pthread_mutex_lock(&m->itab_lock);
	int *r = realloc(in->retired, (in->nretired + 1) * sizeof(int));
	if (!r) {
		pthread_mutex_unlock(&m->itab_lock);
		close(newfd);
		return;
	}
	in->retired = r;
	in->retired[in->nretired++] = in->fd;
	__atomic_store_n(&in->fd, newfd, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&m->itab_lock);
}

/* Remembers the last name of a hard-linked file (see path_of). itab_lock NOT held. */
static void inode_set_alias(sf_mount *m, sf_inode *in, sf_inode *parent, const char *name)
{
	char *copy = strdup(name);
	if (!copy) return;
	pthread_mutex_lock(&m->itab_lock);
	free(in->alias_name);
	in->alias_name = copy;
	in->alias_pdev = parent->dev;
	in->alias_pino = parent->ino;
	pthread_mutex_unlock(&m->itab_lock);
}

/* Registers (or finds) the inode behind an O_PATH fd with attributes st; takes one kernel lookup.
 * Consumes fd. */
static sf_inode *inode_register(sf_mount *m, int fd, const struct stat *st)
{
	pthread_mutex_lock(&m->itab_lock);
	sf_inode *in = itab_find(m, st->st_dev, st->st_ino);
	if (in) {
		in->nlookup++;
		pthread_mutex_unlock(&m->itab_lock);
		close(fd);
		return in;
	}
	in = calloc(1, sizeof *in);
	if (!in) {
		pthread_mutex_unlock(&m->itab_lock);
		close(fd);
		return NULL;
	}
	in->fd = fd;
	in->dev = st->st_dev;
	in->ino = st->st_ino;
	in->type = st->st_mode & S_IFMT;
	in->nlookup = 1;
	itab_insert(m, in);
	pthread_mutex_unlock(&m->itab_lock);
	return in;
}

/* Looks name up under parent, takes one kernel lookup on the result and fills e. Returns 0 or -errno. */
static int do_lookup(sf_mount *m, sf_inode *parent, const char *name, struct fuse_entry_param *e, sf_inode **out)
{
	memset(e, 0, sizeof *e);
	int fd = openat(inode_fd(parent), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) return -errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	sf_inode *in = inode_register(m, fd, &e->attr);
	if (!in) return -ENOMEM;
	if (!S_ISDIR(e->attr.st_mode) && e->attr.st_nlink > 1) inode_set_alias(m, in, parent, name);
	e->ino = (fuse_ino_t)(uintptr_t)in;
	e->attr_timeout = attr_ttl(m);
	e->entry_timeout = entry_ttl(m);
	if (out) *out = in;
	return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Paths relative to the replicated root                                                            */
/* ------------------------------------------------------------------------------------------------ */

/* order_lock held */
static int refresh_root_prefix(sf_mount *m)
{
	char pp[40], buf[PATH_MAX];
	proc_fd_path(pp, m->root_fd);
	ssize_t n = readlink(pp, buf, sizeof buf - 1);
	if (n < 0) return -errno;
	buf[n] = 0;
	char *p = strdup(buf);
	if (!p) return -ENOMEM;
	free(m->root_prefix);
	m->root_prefix = p;
	/* the root "/" is a prefix of everything without its trailing slash */
	m->root_prefix_len = (n == 1 && buf[0] == '/') ? 0 : (size_t)n;
	return 0;
}

/* Strips the root prefix from an absolute path of the underlying tree; NULL when outside. */
static const char *strip_root(sf_mount *m, const char *abs)
{
	size_t pl = m->root_prefix_len;
	if (strncmp(abs, m->root_prefix, pl) != 0) return NULL;
	if (abs[pl] == 0) return abs + pl;
	if (abs[pl] != '/') return NULL;
	return abs + pl + 1;
}

static int same_inode_at(int dirfd, const char *name, const sf_inode *in)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return 0;
	return st.st_dev == in->dev && st.st_ino == in->ino;
}

static int path_of(sf_mount *m, sf_inode *in, char *out);

/* Another existing name of a hard-linked file whose O_PATH name was unlinked: first the last name the
 * kernel was given (alias), then a bounded search of the tree. On success the inode's fd is replaced by
 * one for the found name, so the next call is cheap again. order_lock held. */
static int find_other_name(sf_mount *m, sf_inode *in, char *out)
{
	/* 1. the alias */
	pthread_mutex_lock(&m->itab_lock);
	sf_inode *parent = NULL;
	char *alias = NULL;
	if (in->alias_name) {
		parent = itab_find(m, in->alias_pdev, in->alias_pino); /* the root is in the table too */
		if (parent) {
			parent->pins++;
			alias = strdup(in->alias_name);
		}
	}
	pthread_mutex_unlock(&m->itab_lock);
	if (parent) {
		int found = 0;
		if (alias && same_inode_at(inode_fd(parent), alias, in)) {
			char *ppath = malloc(2 * PATH_MAX);
			if (ppath && path_of(m, parent, ppath) == 1) {
				size_t pl = strlen(ppath), nl = strlen(alias);
				if (pl + nl + 2 < 2 * PATH_MAX) {
					if (pl) {
						memcpy(out, ppath, pl);
						out[pl++] = '/';
					}
					memcpy(out + pl, alias, nl + 1);
					int fd = openat(inode_fd(parent), alias, O_PATH | O_NOFOLLOW | O_CLOEXEC);
					if (fd >= 0) inode_swap_fd(m, in, fd);
					found = 1;
				}
			}
			free(ppath);
		}
		free(alias);
		inode_unref(m, parent, 0, 1);
		if (found) return 1;
	}

	/* 2. breadth-first search from the root for the same (dev, ino) */
	size_t cap = 64, head = 0, tail = 0, visited = 0;
	char **queue = malloc(cap * sizeof(char *));
	if (!queue) return 0;
	queue[tail++] = strdup("");
	int result = 0;
	while (head < tail && !result && visited < SCAN_MAX_ENTRIES) {
		char *dir = queue[head++];
		if (!dir) continue;
		int dfd = *dir ? openat(m->root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
			       : openat(m->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			char buf[16384];
			long n;
			while (!result && (n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
				for (long off = 0; off < n && !result;) {
					struct dirent64 *d = (struct dirent64 *)(buf + off);
					off += d->d_reclen;
					if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
					visited++;
					size_t dl = strlen(dir), nl = strlen(d->d_name);
					if (dl + nl + 2 >= 2 * PATH_MAX) continue;
					if (d->d_ino == in->ino && same_inode_at(dfd, d->d_name, in)) {
						if (dl) {
							memcpy(out, dir, dl);
							out[dl] = '/';
							memcpy(out + dl + 1, d->d_name, nl + 1);
						} else {
							memcpy(out, d->d_name, nl + 1);
						}
						int fd = openat(dfd, d->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
						if (fd >= 0) inode_swap_fd(m, in, fd);
						result = 1;
						break;
					}
					int isdir = d->d_type == DT_DIR;
					if (d->d_type == DT_UNKNOWN) {
						struct stat st;
						isdir = fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
					}
					if (isdir) {
						if (tail == cap) {
							char **q = realloc(queue, 2 * cap * sizeof(char *));
							if (!q) continue;
							queue = q;
							cap *= 2;
						}
						char *sub = malloc(dl + nl + 2);
						if (!sub) continue;
						if (dl) {
							memcpy(sub, dir, dl);
							sub[dl] = '/';
							memcpy(sub + dl + 1, d->d_name, nl + 1);
						} else {
							memcpy(sub, d->d_name, nl + 1);
						}
						queue[tail++] = sub;
					}
				}
			}
			close(dfd);
		}
	}
	for (size_t i = 0; i < tail; i++) free(queue[i]);
	free(queue);
	return result;
}

/* The root-relative path of an inode ("" for the root) into out (2 * PATH_MAX). Returns 1 with a path,
 * 0 when the object has no name any more (unlinked, removed directory, moved out of the tree).
 * The kernel keeps the dentry behind an O_PATH fd up to date across renames of the file and of its
 * ancestors, so readlink of /proc/self/fd/<fd> is the current path; only a vanished name needs more
 * work. Called under order_lock, so the answer is consistent with the order of the events. */
static int path_of(sf_mount *m, sf_inode *in, char *out)
{
	if (in == &m->root) {
		out[0] = 0;
		return 1;
	}
	char pp[40];
	char *abs = out; /* readlink into out, then move the relative part to the front */
	for (int attempt = 0; attempt < 2; attempt++) {
		proc_fd_path(pp, inode_fd(in));
		ssize_t n = readlink(pp, abs, 2 * PATH_MAX - 1);
		if (n < 0) return 0;
		abs[n] = 0;
		const char *rel = strip_root(m, abs);
		if (!rel) {
			if (attempt == 0 && refresh_root_prefix(m) == 0) continue;
			break;
		}
		size_t rl = strlen(rel), sl = sizeof(DELETED_SUFFIX) - 1;
		if (rl > sl && !strcmp(rel + rl - sl, DELETED_SUFFIX)) {
			/* either unlinked, or a name that really ends like that */
			if (!same_inode_at(m->root_fd, rel, in)) break;
		}
		memmove(out, rel, rl + 1);
		return 1;
	}
	if (in->type == S_IFDIR) return 0;
	struct stat st;
	if (fstat(inode_fd(in), &st) < 0 || st.st_nlink == 0) return 0;
	return find_other_name(m, in, out);
}

/* parent path + "/" + name into out; 1 on success, 0 if the parent has no name */
static int child_path(sf_mount *m, sf_inode *parent, const char *name, char *out)
{
	if (path_of(m, parent, out) != 1) return 0;
	size_t pl = strlen(out), nl = strlen(name);
	if (pl + nl + 2 > 2 * PATH_MAX) return 0;
	if (pl) out[pl++] = '/';
	memcpy(out + pl, name, nl + 1);
	return 1;
}

/* A writable handle of the inode (for events about an unlinked file), or 0 */
static uint64_t inode_any_handle(sf_mount *m, sf_inode *in)
{
	pthread_mutex_lock(&m->itab_lock);
	uint64_t id = in->whandles ? in->whandles->id : 0;
	pthread_mutex_unlock(&m->itab_lock);
	return id;
}

/* ------------------------------------------------------------------------------------------------ */
/* Handles                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

static sf_handle *handle_new(sf_mount *m, int fd, sf_inode *in, uint64_t id)
{
	sf_handle *h = calloc(1, sizeof *h);
	if (!h) return NULL;
	h->fd = fd;
	h->inode = in;
	h->id = id;
	pthread_mutex_lock(&m->itab_lock);
	h->mnext = m->handles;
	if (m->handles) m->handles->mprev = h;
	m->handles = h;
	if (id) {
		h->inext = in->whandles;
		if (in->whandles) in->whandles->iprev = h;
		in->whandles = h;
	}
	pthread_mutex_unlock(&m->itab_lock);
	return h;
}

/* Unlinks and frees a handle; closes its fd. */
static void handle_close(sf_mount *m, sf_handle *h)
{
	pthread_mutex_lock(&m->itab_lock);
	if (h->mprev) h->mprev->mnext = h->mnext;
	else m->handles = h->mnext;
	if (h->mnext) h->mnext->mprev = h->mprev;
	if (h->id && h->inode) {
		if (h->iprev) h->iprev->inext = h->inext;
		else h->inode->whandles = h->inext;
		if (h->inext) h->inext->iprev = h->iprev;
	}
	pthread_mutex_unlock(&m->itab_lock);
	close(h->fd);
	free(h->dbuf);
	free(h);
}

static inline sf_handle *fi_handle(struct fuse_file_info *fi) { return (sf_handle *)(uintptr_t)fi->fh; }

/* ------------------------------------------------------------------------------------------------ */
/* Handing events to JavaScript                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static void reply_kernel(sf_mount *m, sf_job *j, int err, int order_locked);
static void local_settle(sf_job *j, int err);

/* Data changes (write, truncation, allocation) and durability requests (fsync) wait for JavaScript's reply:
 * that is where the peer's acknowledgement is awaited. Other mutations change only names and attributes. */
static int changes_data(const sf_job *j)
{
	switch (j->kind) {
	case EV_WRITE:
	case EV_FALLOCATE:
	case EV_FSYNC:
	case EV_FSYNCDIR:
		return 1;
	case EV_OPEN:
		return (j->flags & O_TRUNC) != 0;
	case EV_SETATTR:
		return (j->fields & F_SIZE) != 0;
	default:
		return 0;
	}
}

/* order_lock held. Hands the job to the JS thread. Returns 0, or -EIO when the mount is going away (the
 * caller then answers the kernel). With hold_metadata off, a mutation that changes no data is answered
 * here, once its event is queued: the application goes on without waiting for the JS thread or the peer.
 * Its place in the replication order is kept (events are queued under the order lock), and any later data
 * change or fsync waits for an acknowledgement that covers it (acknowledgements are cumulative). */
static int enqueue(sf_mount *m, sf_job *j)
{
	int early = !m->hold_metadata && j->reply_kind != R_NONE && !changes_data(j);
	sf_job reply;
	if (early) {
		/* the JS thread frees a job with nothing to answer as soon as it has read it: keep what the
		 * answer needs */
		reply = *j;
		j->reply_kind = R_NONE;
	}
	napi_status s = napi_call_threadsafe_function(m->tsfn, j, napi_tsfn_nonblocking);
	if (s != napi_ok) {
		if (early) j->reply_kind = reply.reply_kind;
		return -EIO;
	}
	m->st_events++;
	if (early) reply_kernel(m, &reply, 0, 1);
	return 0;
}

/* Mutation prologue: refuses it on a read-only mount (EROFS), else takes the order lock unless the mount
 * is stopping (then answers EIO). The kernel refuses most mutations of a read-only mount itself; this
 * check covers files opened for writing before the switch and the moment between mount and the flag. */
static int order_begin(sf_mount *m, fuse_req_t req)
{
	if (__atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE)) {
		fuse_reply_err(req, EROFS);
		return 0;
	}
	pthread_mutex_lock(&m->order_lock);
	if (m->stopping) {
		pthread_mutex_unlock(&m->order_lock);
		fuse_reply_err(req, EIO);
		return 0;
	}
	return 1;
}

static char *dup_or_null(const char *s, int have)
{
	return have ? strdup(s) : NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* FUSE operations                                                                                  */
/* ------------------------------------------------------------------------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Every write must reach us before write() returns (no writeback cache); the kernel clears
	 * set-user-ID bits itself and tells us with a setattr (no HANDLE_KILLPRIV), so that change is
	 * replicated like any other; the caller's umask is applied by the kernel (no DONT_MASK). */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_DONT_MASK |
			FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_POSIX_ACL);
	/* O_TRUNC arrives with open, so the truncation is part of the open event */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* 1 MiB write requests: libfuse derives max_pages from max_write */
	conn->max_write = MAX_WRITE_BYTES;
	if (conn->max_readahead < MAX_WRITE_BYTES) conn->max_readahead = MAX_WRITE_BYTES;
	conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	sf_mount *m = req_mount(req);
	struct fuse_entry_param e;
	int rc = do_lookup(m, get_inode(m, parent), name, &e, NULL);
	if (rc == -ENOENT) {
		/* a negative entry the kernel may cache for entry_timeout */
		memset(&e, 0, sizeof e);
		e.entry_timeout = entry_ttl(m);
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_entry(req, &e) != 0) inode_unref(m, get_inode(m, e.ino), 1, 0);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	sf_mount *m = req_mount(req);
	inode_unref(m, get_inode(m, ino), nlookup, 0);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	sf_mount *m = req_mount(req);
	for (size_t i = 0; i < count; i++) inode_unref(m, get_inode(m, forgets[i].ino), forgets[i].nlookup, 0);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	struct stat st;
	if (fstatat(inode_fd(get_inode(m, ino)), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fuse_reply_attr(req, &st, attr_ttl(m));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	sf_mount *m = req_mount(req);
	char *buf = scratch_buf(PATH_MAX + 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = readlinkat(inode_fd(get_inode(m, ino)), "", buf, PATH_MAX);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	buf[n] = 0;
	fuse_reply_readlink(req, buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	sf_mount *m = req_mount(req);
	struct statvfs sv;
	if (fstatvfs(inode_fd(get_inode(m, ino)), &sv) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fuse_reply_statfs(req, &sv);
}

/* Owner of a new object: the caller, with the group of a set-group-ID parent. */
static void new_owner(fuse_req_t req, const struct stat *pst, uid_t *uid, gid_t *gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	*uid = ctx->uid;
	*gid = (pst->st_mode & S_ISGID) ? pst->st_gid : ctx->gid;
}

/* Gives a just-created object (dirfd/name, or fd when >= 0) its owner and exactly the wanted mode, and
 * refreshes st. chown clears set-ID bits of non-directories, hence the chmod after it. Returns 0/-errno. */
static int settle_new(int dirfd, const char *name, int fd, uid_t uid, gid_t gid, mode_t want_perm, struct stat *st)
{
	int lnk = S_ISLNK(st->st_mode);
	if (st->st_uid != uid || st->st_gid != gid) {
		int rc = fd >= 0 ? fchown(fd, uid, gid) : fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
		if (rc < 0) return -errno;
	}
	int fst = fd >= 0 ? fstat(fd, st) : fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
	if (fst < 0) return -errno;
	if (!lnk && (st->st_mode & 07777) != (want_perm & 07777)) {
		int rc = fd >= 0 ? fchmod(fd, want_perm & 07777) : fchmodat(dirfd, name, want_perm & 07777, 0);
		if (rc < 0) return -errno;
		fst = fd >= 0 ? fstat(fd, st) : fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
		if (fst < 0) return -errno;
	}
	return 0;
}

/* mknod, mkdir, symlink: create locally, settle owner/mode, look the new entry up, hand the event over. */
static void make_node(fuse_req_t req, fuse_ino_t parent_ino, const char *name, mode_t mode, dev_t rdev,
		      const char *link_target, int kind)
{
	sf_mount *m = req_mount(req);
	sf_inode *parent = get_inode(m, parent_ino);
	sf_job *j = job_alloc(m, req, kind, R_ENTRY);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	thread_umask_zero();
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int pfd = inode_fd(parent);
	struct stat pst, st;
	int err = 0;
	if (fstat(pfd, &pst) < 0) {
		err = errno;
		goto fail;
	}
	uid_t uid;
	gid_t gid;
	new_owner(req, &pst, &uid, &gid);
	mode_t want = mode & 07777;
	int rc;
	if (kind == EV_MKDIR) {
		/* a directory below a set-group-ID directory inherits the bit */
		want = (mode & 01777) | ((pst.st_mode & S_ISGID) ? S_ISGID : 0);
		rc = mkdirat(pfd, name, mode & 01777);
	} else if (kind == EV_SYMLINK) {
		rc = symlinkat(link_target, pfd, name);
	} else {
		rc = mknodat(pfd, name, mode, rdev);
	}
	if (rc < 0) {
		err = errno;
		goto fail;
	}
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || (rc = settle_new(pfd, name, -1, uid, gid, want, &st)) < 0) {
		err = rc < 0 ? -rc : errno;
		/* do not leave a half-made object behind: it was never reported */
		unlinkat(pfd, name, kind == EV_MKDIR ? AT_REMOVEDIR : 0);
		goto fail;
	}
	sf_inode *in = NULL;
	rc = do_lookup(m, parent, name, &j->e, &in);
	if (rc < 0) {
		err = -rc;
		goto fail;
	}
	j->inode = in;
	j->uid = j->e.attr.st_uid;
	j->gid = j->e.attr.st_gid;
	j->mode = kind == EV_MKNOD ? j->e.attr.st_mode : (j->e.attr.st_mode & 07777);
	j->rdev = j->e.attr.st_rdev;
	if (!child_path(m, parent, name, s->path)) {
		/* cannot happen for a directory we just created something in; be safe */
		err = EIO;
		inode_unref(m, in, 1, 0);
		goto fail;
	}
	j->path = strdup(s->path);
	if (link_target) j->path2 = strdup(link_target);
	if (enqueue(m, j) < 0) {
		inode_unref(m, in, 1, 0);
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL, EV_MKNOD);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | mode, 0, NULL, EV_MKDIR);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link, EV_SYMLINK);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	sf_mount *m = req_mount(req);
	sf_inode *in = get_inode(m, ino), *np = get_inode(m, newparent);
	sf_job *j = job_alloc(m, req, EV_LINK, R_ENTRY);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int err = 0;
	int have_old = path_of(m, in, s->path);
	if (linkat(inode_fd(in), "", inode_fd(np), newname, AT_EMPTY_PATH) < 0) {
		err = errno;
		goto fail;
	}
	if (!have_old) {
		/* linked an object that had no name: cannot be replicated consistently; undo */
		unlinkat(inode_fd(np), newname, 0);
		err = ENOENT;
		goto fail;
	}
	sf_inode *got = NULL;
	int rc = do_lookup(m, np, newname, &j->e, &got);
	if (rc < 0) {
		err = -rc;
		goto fail;
	}
	inode_set_alias(m, got, np, newname);
	j->inode = got;
	if (!child_path(m, np, newname, s->path2)) {
		inode_unref(m, got, 1, 0);
		err = EIO;
		goto fail;
	}
	j->path = strdup(s->path);
	j->path2 = strdup(s->path2);
	if (enqueue(m, j) < 0) {
		inode_unref(m, got, 1, 0);
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent_ino, const char *name, int kind)
{
	sf_mount *m = req_mount(req);
	sf_inode *parent = get_inode(m, parent_ino);
	sf_job *j = job_alloc(m, req, kind, R_ERR);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int err = 0;
	int have = child_path(m, parent, name, s->path);
	if (unlinkat(inode_fd(parent), name, kind == EV_RMDIR ? AT_REMOVEDIR : 0) < 0) {
		err = errno;
		goto fail;
	}
	if (!have) {
		err = EIO;
		goto fail;
	}
	j->path = strdup(s->path);
	if (enqueue(m, j) < 0) {
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) { remove_entry(req, parent, name, EV_UNLINK); }
static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) { remove_entry(req, parent, name, EV_RMDIR); }

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	sf_mount *m = req_mount(req);
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	sf_inode *p = get_inode(m, parent), *np = get_inode(m, newparent);
	sf_job *j = job_alloc(m, req, EV_RENAME, R_ERR);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int err = 0;
	int have = child_path(m, p, name, s->path) && child_path(m, np, newname, s->path2);
	if (syscall(SYS_renameat2, inode_fd(p), name, inode_fd(np), newname, flags) < 0) {
		err = errno;
		goto fail;
	}
	if (!have) {
		err = EIO;
		goto fail;
	}
	j->path = strdup(s->path);
	j->path2 = strdup(s->path2);
	j->flags = flags;
	if (enqueue(m, j) < 0) {
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

/* Flags that are replicated with open/create (never O_APPEND: the kernel gives the offset of every write;
 * never O_CREAT: creation is its own event). */
#define REPL_FLAGS (O_ACCMODE | O_TRUNC | O_SYNC | O_DSYNC)
/* Flags the underlying open must not get: O_APPEND (the kernel gives the offset), O_DIRECT (our buffers
 * are not aligned; the page cache of the underlying file is not what the application sees anyway). */
#define STRIP_FLAGS (O_APPEND | O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW)

static inline int is_replicated_open(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_inode *in = get_inode(m, ino);
	char pp[40];
	int uflags = (fi->flags & ~STRIP_FLAGS) | O_CLOEXEC;
	fi->noflush = 1; /* nothing to do at close(): spare the round trip */
	if (!is_replicated_open(fi->flags)) {
		proc_fd_path(pp, inode_fd(in));
		int fd = open(pp, uflags);
		if (fd < 0) {
			fuse_reply_err(req, errno);
			return;
		}
		sf_handle *h = handle_new(m, fd, in, 0);
		if (!h) {
			close(fd);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->fh = (uintptr_t)h;
		if (fuse_reply_open(req, fi) != 0) handle_close(m, h);
		return;
	}
	if (__atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	sf_job *j = job_alloc(m, req, EV_OPEN, R_OPEN);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int err = 0;
	proc_fd_path(pp, inode_fd(in));
	int fd = open(pp, uflags);
	if (fd < 0) {
		err = errno;
		goto fail;
	}
	struct stat st;
	if ((fi->flags & O_TRUNC) && fstat(fd, &st) == 0) {
		j->mtime = ts_ns(&st.st_mtim);
		j->fields |= F_MTIME;
	}
	int have = path_of(m, in, s->path);
	sf_handle *h = handle_new(m, fd, in, ++m->next_handle);
	if (!h) {
		close(fd);
		err = ENOMEM;
		goto fail;
	}
	fi->fh = (uintptr_t)h;
	j->fi = *fi;
	j->h = h;
	j->handle = h->id;
	j->flags = fi->flags & REPL_FLAGS;
	j->path = dup_or_null(s->path, have);
	j->fields |= F_PATH;
	if (enqueue(m, j) < 0) {
		handle_close(m, h);
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

static void op_create(fuse_req_t req, fuse_ino_t parent_ino, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_inode *parent = get_inode(m, parent_ino);
	sf_job *j = job_alloc(m, req, EV_CREATE, R_CREATE);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	thread_umask_zero();
	fi->noflush = 1;
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int pfd = inode_fd(parent);
	int err = 0, fd = -1, created = 1;
	struct stat pst, st;
	if (fstat(pfd, &pst) < 0) {
		err = errno;
		goto fail;
	}
	int base = (fi->flags & ~(STRIP_FLAGS | O_TRUNC)) | O_CLOEXEC | O_NOFOLLOW;
	/* O_EXCL tells us whether we created the file; only then does it get the caller as owner */
	fd = openat(pfd, name, base | O_CREAT | O_EXCL, mode & 07777);
	if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
		/* the name appeared behind the kernel's back: this is an open of an existing file */
		created = 0;
		fd = openat(pfd, name, base | (fi->flags & O_TRUNC));
	}
	if (fd < 0) {
		err = errno;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		err = errno;
		goto fail_close;
	}
	if (created) {
		uid_t uid;
		gid_t gid;
		new_owner(req, &pst, &uid, &gid);
		int rc = settle_new(pfd, name, fd, uid, gid, mode, &st);
		if (rc < 0) {
			err = -rc;
			unlinkat(pfd, name, 0);
			goto fail_close;
		}
	}
	sf_inode *in = NULL;
	int rc = do_lookup(m, parent, name, &j->e, &in);
	if (rc < 0) {
		err = -rc;
		goto fail_close;
	}
	if (!child_path(m, parent, name, s->path)) {
		inode_unref(m, in, 1, 0);
		err = EIO;
		goto fail_close;
	}
	sf_handle *h = handle_new(m, fd, in, ++m->next_handle);
	if (!h) {
		inode_unref(m, in, 1, 0);
		err = ENOMEM;
		goto fail_close;
	}
	fd = -1;
	fi->fh = (uintptr_t)h;
	j->fi = *fi;
	j->h = h;
	j->inode = in;
	j->handle = h->id;
	j->flags = fi->flags & REPL_FLAGS;
	j->path = strdup(s->path);
	j->mtime = ts_ns(&j->e.attr.st_mtim);
	j->fields |= F_MTIME;
	if (created) {
		j->mode = j->e.attr.st_mode & 07777;
		j->uid = j->e.attr.st_uid;
		j->gid = j->e.attr.st_gid;
	} else {
		j->kind = EV_OPEN; /* replicated as an open; still answered with an entry */
		if (!(fi->flags & O_TRUNC)) j->fields &= ~F_MTIME;
		j->fields |= F_PATH;
	}
	if (enqueue(m, j) < 0) {
		handle_close(m, h);
		inode_unref(m, in, 1, 0);
		err = EIO;
		goto fail;
	}
	pthread_mutex_unlock(&m->order_lock);
	return;
fail_close:
	if (fd >= 0) close(fd);
fail:
	pthread_mutex_unlock(&m->order_lock);
	job_free(j);
	fuse_reply_err(req, err);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	sf_handle *h = fi_handle(fi);
	char *buf = scratch_buf(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = pread(h->fd, buf + got, size - got, off + (off_t)got);
		if (n < 0) {
			if (errno == EINTR) continue;
			if (got) break;
			fuse_reply_err(req, errno);
			return;
		}
		if (n == 0) break;
		got += (size_t)n;
	}
	fuse_reply_buf(req, buf, got);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf, off_t off, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_handle *h = fi_handle(fi);
	size_t size = fuse_buf_size(in_buf);
	/* the one copy: this buffer is both what we write locally and what JavaScript gets */
	void *data = malloc(size ? size : 1);
	sf_job *j = job_alloc(m, req, EV_WRITE, R_WRITE);
	if (!data || !j) {
		free(data);
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (in_buf->count == 1 && !(in_buf->buf[0].flags & FUSE_BUF_IS_FD)) {
		memcpy(data, in_buf->buf[0].mem, size);
	} else {
		struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
		dst.buf[0].mem = data;
		ssize_t c = fuse_buf_copy(&dst, in_buf, 0);
		if (c < 0 || (size_t)c != size) {
			free(data);
			job_free(j);
			fuse_reply_err(req, c < 0 ? (int)-c : EIO);
			return;
		}
	}
	if (!order_begin(m, req)) {
		free(data);
		job_free(j);
		return;
	}
	size_t done = 0;
	int err = 0;
	while (done < size) {
		ssize_t n = pwrite(h->fd, (char *)data + done, size - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR) continue;
			err = errno;
			break;
		}
		if (n == 0) break;
		done += (size_t)n;
	}
	if (done == 0 && size > 0) {
		pthread_mutex_unlock(&m->order_lock);
		free(data);
		job_free(j);
		fuse_reply_err(req, err ? err : EIO);
		return;
	}
	struct stat st;
	if (fstat(h->fd, &st) == 0) j->mtime = ts_ns(&st.st_mtim);
	j->handle = h->id;
	j->offset = off;
	j->data = data;
	j->len = done;
	j->count = done;
	m->st_writes++;
	m->st_write_bytes += done;
	if (enqueue(m, j) < 0) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_unlock(&m->order_lock);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* nothing is buffered in the daemon: every write was applied when it was answered */
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_handle *h = fi_handle(fi);
	if (!h->id) {
		handle_close(m, h);
		fuse_reply_err(req, 0);
		return;
	}
	sf_job *j = job_alloc(m, NULL, EV_RELEASE, R_NONE);
	uint64_t id = h->id;
	pthread_mutex_lock(&m->order_lock);
	handle_close(m, h);
	if (j) {
		j->handle = id;
		if (m->stopping || enqueue(m, j) < 0) job_free(j);
	}
	pthread_mutex_unlock(&m->order_lock);
	fuse_reply_err(req, 0);
}

/* fsync and fsyncdir: the event is queued first and the local sync runs meanwhile, outside the order lock
 * (it changes nothing another event is ordered against, and may take milliseconds), so the peer's
 * acknowledgement and the local disk are waited for at the same time; the call returns when both are
 * done (local_settle/js_settle). A read-only mount changed nothing through us: local sync only. */
static void sync_handle(fuse_req_t req, sf_inode *in, sf_handle *h, int datasync, int kind)
{
	sf_mount *m = req_mount(req);
	if (__atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE)) {
		fuse_reply_err(req, (datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0 ? errno : 0);
		return;
	}
	sf_job *j = job_alloc(m, req, kind, R_ERR);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	j->datasync = datasync;
	if (kind == EV_FSYNC && h->id) {
		j->handle = h->id;
		j->fields |= F_HANDLE;
	} else {
		/* a directory, or fsync on a read-only handle: name the object instead */
		j->path = dup_or_null(s->path, path_of(m, in, s->path));
		j->fields |= F_PATH;
	}
	j->parts = 2;
	if (enqueue(m, j) < 0) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_unlock(&m->order_lock);
	/* the job stays ours until this part is settled: the kernel keeps the handle while the call lasts */
	local_settle(j, (datasync ? fdatasync(h->fd) : fsync(h->fd)) < 0 ? errno : 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	sf_handle *h = fi_handle(fi);
	sync_handle(req, h->inode, h, datasync, EV_FSYNC);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_handle *h = fi_handle(fi);
	sf_job *j = job_alloc(m, req, EV_FALLOCATE, R_ERR);
	if (!j) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	if (fallocate(h->fd, mode, offset, length) < 0) {
		int err = errno;
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, err);
		return;
	}
	struct stat st;
	if (fstat(h->fd, &st) == 0) j->mtime = ts_ns(&st.st_mtim);
	j->handle = h->id;
	j->mode = (uint32_t)mode;
	j->offset = offset;
	j->length = length;
	if (enqueue(m, j) < 0) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_unlock(&m->order_lock);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_inode *in = get_inode(m, ino);
	sf_handle *h = fi ? fi_handle(fi) : NULL;
	const int replicable = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_SIZE |
			       FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME;
	struct stat st;
	char pp[40];
	if (!(valid & replicable)) {
		if (fstatat(inode_fd(in), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) fuse_reply_err(req, errno);
		else fuse_reply_attr(req, &st, attr_ttl(m));
		return;
	}
	sf_job *j = job_alloc(m, req, EV_SETATTR, R_ATTR);
	struct scratch *s = scratch();
	if (!j || !s) {
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	int ofd = inode_fd(in);
	int is_lnk = in->type == S_IFLNK;
	int err = 0, applied = 0;
	/* name the object before changing it (a chmod does not move it, but be uniform) */
	if (h && h->id) {
		j->handle = h->id;
		j->fields |= F_HANDLE;
	} else {
		int have = path_of(m, in, s->path);
		uint64_t any = have ? 0 : inode_any_handle(m, in);
		if (any) {
			j->handle = any;
			j->fields |= F_HANDLE;
		} else {
			j->path = dup_or_null(s->path, have);
			j->fields |= F_PATH;
		}
	}
	proc_fd_path(pp, ofd);
	if (valid & FUSE_SET_ATTR_MODE) {
		int rc;
		if (is_lnk) {
			rc = -1;
			errno = EOPNOTSUPP;
		} else if (h) {
			rc = fchmod(h->fd, attr->st_mode & 07777);
		} else {
			rc = chmod(pp, attr->st_mode & 07777);
		}
		if (rc < 0) err = errno;
		else {
			applied |= F_MODE;
		}
	}
	if (!err && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t u = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t g = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (fchownat(ofd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) err = errno;
		else {
			if (valid & FUSE_SET_ATTR_UID) applied |= F_UID;
			if (valid & FUSE_SET_ATTR_GID) applied |= F_GID;
		}
	}
	if (!err && (valid & FUSE_SET_ATTR_SIZE)) {
		int rc = (h && h->id) ? ftruncate(h->fd, attr->st_size) : truncate(pp, attr->st_size);
		if (rc < 0) err = errno;
		else {
			applied |= F_SIZE;
			j->size = attr->st_size;
		}
	}
	if (!err && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec tv[2];
		tv[0].tv_sec = 0;
		tv[1].tv_sec = 0;
		tv[0].tv_nsec = UTIME_OMIT;
		tv[1].tv_nsec = UTIME_OMIT;
		if (valid & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
		int rc = (h && h->id) ? futimens(h->fd, tv) : utimensat(ofd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		if (rc < 0) err = errno;
		else {
			if (valid & FUSE_SET_ATTR_ATIME) applied |= F_ATIME;
			if (valid & FUSE_SET_ATTR_MTIME) applied |= F_MTIME;
		}
	}
	if (!applied) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, err ? err : EIO);
		return;
	}
	if (fstatat(ofd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) memset(&st, 0, sizeof st);
	/* the event carries the values the file actually got: "now" resolved, set-ID bits as they ended */
	if (applied & F_SIZE) applied |= F_MTIME; /* a truncation moved mtime: replicate the exact value */
	j->fields |= applied;
	j->mode = st.st_mode & 07777;
	j->uid = st.st_uid;
	j->gid = st.st_gid;
	j->atime = ts_ns(&st.st_atim);
	j->mtime = ts_ns(&st.st_mtim);
	j->e.attr = st;
	j->deferred_err = err;
	if (enqueue(m, j) < 0) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_unlock(&m->order_lock);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	sf_mount *m = req_mount(req);
	sf_inode *in = get_inode(m, ino);
	int fd = openat(inode_fd(in), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sf_handle *h = handle_new(m, fd, in, 0);
	char *dbuf = malloc(32768);
	if (!h || !dbuf) {
		free(dbuf);
		if (h) handle_close(m, h);
		else close(fd);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->is_dir = 1;
	h->dbuf = dbuf;
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0) handle_close(m, h);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, int plus)
{
	sf_mount *m = req_mount(req);
	sf_handle *h = fi_handle(fi);
	sf_inode *dir = get_inode(m, ino);
	char *out = scratch_buf(size);
	if (!out) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != h->dpos) {
		if (lseek(h->fd, off, SEEK_SET) < 0) {
			fuse_reply_err(req, errno);
			return;
		}
		h->dpos = off;
		h->dlen = h->doff = 0;
	}
	size_t used = 0;
	int err = 0;
	for (;;) {
		if (h->doff >= h->dlen) {
			long n = syscall(SYS_getdents64, h->fd, h->dbuf, 32768);
			if (n < 0) {
				err = errno;
				break;
			}
			if (n == 0) break;
			h->dlen = (int)n;
			h->doff = 0;
		}
		struct dirent64 *d = (struct dirent64 *)(h->dbuf + h->doff);
		size_t sz;
		if (plus) {
			struct fuse_entry_param e;
			int dots = !strcmp(d->d_name, ".") || !strcmp(d->d_name, "..");
			sf_inode *child = NULL;
			if (dots) {
				memset(&e, 0, sizeof e);
				e.attr.st_ino = d->d_ino;
				e.attr.st_mode = (mode_t)d->d_type << 12;
			} else {
				int rc = do_lookup(m, dir, d->d_name, &e, &child);
				if (rc == -ENOENT) { /* vanished meanwhile */
					h->doff += d->d_reclen;
					h->dpos = d->d_off;
					continue;
				}
				if (rc < 0) {
					err = -rc;
					break;
				}
			}
			sz = fuse_add_direntry_plus(req, out + used, size - used, d->d_name, &e, d->d_off);
			if (sz > size - used) {
				if (child) inode_unref(m, child, 1, 0);
				break;
			}
		} else {
			struct stat st;
			memset(&st, 0, sizeof st);
			st.st_ino = d->d_ino;
			st.st_mode = (mode_t)d->d_type << 12;
			sz = fuse_add_direntry(req, out + used, size - used, d->d_name, &st, d->d_off);
			if (sz > size - used) break;
		}
		used += sz;
		h->doff += d->d_reclen;
		h->dpos = d->d_off;
	}
	if (err && used == 0) fuse_reply_err(req, err);
	else fuse_reply_buf(req, out, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	handle_close(req_mount(req), fi_handle(fi));
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	sync_handle(req, get_inode(req_mount(req), ino), fi_handle(fi), datasync, EV_FSYNCDIR);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	sf_mount *m = req_mount(req);
	char pp[40];
	if (m->no_xattrs) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	/* through /proc/self/fd of the O_PATH fd: reaches the object itself, even a symlink */
	proc_fd_path(pp, inode_fd(get_inode(m, ino)));
	if (size == 0) {
		ssize_t n = getxattr(pp, name, NULL, 0);
		if (n < 0) fuse_reply_err(req, errno);
		else fuse_reply_xattr(req, (size_t)n);
		return;
	}
	char *buf = scratch_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = getxattr(pp, name, buf, size);
	if (n < 0) fuse_reply_err(req, errno);
	else fuse_reply_buf(req, buf, (size_t)n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	sf_mount *m = req_mount(req);
	char pp[40];
	if (m->no_xattrs) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	proc_fd_path(pp, inode_fd(get_inode(m, ino)));
	if (size == 0) {
		ssize_t n = listxattr(pp, NULL, 0);
		if (n < 0) fuse_reply_err(req, errno);
		else fuse_reply_xattr(req, (size_t)n);
		return;
	}
	char *buf = scratch_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = listxattr(pp, buf, size);
	if (n < 0) fuse_reply_err(req, errno);
	else fuse_reply_buf(req, buf, (size_t)n);
}

static void xattr_change(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags,
			 int kind)
{
	sf_mount *m = req_mount(req);
	sf_inode *in = get_inode(m, ino);
	if (m->no_xattrs) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	sf_job *j = job_alloc(m, req, kind, R_ERR);
	struct scratch *s = scratch();
	void *copy = NULL;
	if (kind == EV_SETXATTR) copy = malloc(size ? size : 1);
	char *ncopy = strdup(name);
	if (!j || !s || !ncopy || (kind == EV_SETXATTR && !copy)) {
		free(copy);
		free(ncopy);
		if (j) job_free(j);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (copy && size) memcpy(copy, value, size);
	j->name = ncopy;
	j->data = copy;
	j->len = size;
	j->flags = (uint32_t)flags;
	if (!order_begin(m, req)) {
		job_free(j);
		return;
	}
	char pp[40];
	proc_fd_path(pp, inode_fd(in));
	int rc = kind == EV_SETXATTR ? setxattr(pp, name, value, size, flags) : removexattr(pp, name);
	if (rc < 0) {
		int err = errno;
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, err);
		return;
	}
	j->path = dup_or_null(s->path, path_of(m, in, s->path));
	j->fields |= F_PATH;
	if (enqueue(m, j) < 0) {
		pthread_mutex_unlock(&m->order_lock);
		job_free(j);
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_unlock(&m->order_lock);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
	xattr_change(req, ino, name, value, size, flags, EV_SETXATTR);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	xattr_change(req, ino, name, NULL, 0, 0, EV_REMOVEXATTR);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r = lseek(fi_handle(fi)->fd, off, whence);
	if (r < 0) fuse_reply_err(req, errno);
	else fuse_reply_lseek(req, r);
}

static const struct fuse_lowlevel_ops sf_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.link = op_link,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.fallocate = op_fallocate,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.lseek = op_lseek,
};

/* ------------------------------------------------------------------------------------------------ */
/* Answering the kernel once JavaScript replied                                                     */
/* ------------------------------------------------------------------------------------------------ */

/* Answers j->req with err (0 = success) and releases what an error leaves. order_locked: the caller holds
 * the order lock (an early answer from enqueue). */
static void reply_kernel(sf_mount *m, sf_job *j, int err, int order_locked)
{
	fuse_req_t req = j->req;
	if (!err) err = j->deferred_err;
	switch (j->reply_kind) {
	case R_NONE:
		break;
	case R_ERR:
		fuse_reply_err(req, err);
		break;
	case R_WRITE:
		if (err) fuse_reply_err(req, err);
		else fuse_reply_write(req, j->count);
		break;
	case R_ATTR:
		if (err) fuse_reply_err(req, err);
		else fuse_reply_attr(req, &j->e.attr, attr_ttl(m));
		break;
	case R_ENTRY:
		if (err) {
			fuse_reply_err(req, err);
			inode_unref(m, j->inode, 1, 0);
		} else if (fuse_reply_entry(req, &j->e) != 0) {
			inode_unref(m, j->inode, 1, 0);
		}
		break;
	case R_OPEN:
	case R_CREATE: {
		int failed = 0;
		if (err) {
			fuse_reply_err(req, err);
			failed = 1;
		} else {
			int rc = j->reply_kind == R_CREATE ? fuse_reply_create(req, &j->e, &j->fi) : fuse_reply_open(req, &j->fi);
			/* the application's open was interrupted: the kernel will never release this handle */
			if (rc != 0) failed = 2;
		}
		if (failed) {
			uint64_t id = j->h->id;
			if (!order_locked) pthread_mutex_lock(&m->order_lock);
			handle_close(m, j->h);
			if (failed == 2 && !m->stopping) {
				/* JavaScript has seen the handle open: tell it the handle is gone */
				sf_job *r = job_alloc(m, NULL, EV_RELEASE, R_NONE);
				if (r) {
					r->handle = id;
					if (enqueue(m, r) < 0) job_free(r);
				}
			}
			if (!order_locked) pthread_mutex_unlock(&m->order_lock);
			if (j->reply_kind == R_CREATE) inode_unref(m, j->inode, 1, 0);
		}
		break;
	}
	}
}

/* JS thread (or unmount). Answers the kernel for a job JavaScript (or the teardown) settled. */
static void answer(sf_job *j, int err)
{
	reply_kernel(j->m, j, err, 0);
	j->replied = 1;
}

/* JavaScript's reply to a pending job; frees it once the kernel has its answer. A joined job (fsync) is
 * answered by whichever of this reply and the local sync comes last, with the local error first. */
static void js_settle(sf_job *j, int err)
{
	if (j->parts) {
		j->js_err = err;
		j->js_replied = 1;
		if (__atomic_sub_fetch(&j->parts, 1, __ATOMIC_ACQ_REL) > 0) return;
		err = j->local_err ? j->local_err : err;
	}
	answer(j, err);
	job_free(j);
}

/* Worker thread: the local sync of a joined job ended. */
static void local_settle(sf_job *j, int err)
{
	j->local_err = err;
	if (__atomic_sub_fetch(&j->parts, 1, __ATOMIC_ACQ_REL) > 0) return;
	answer(j, err ? err : j->js_err);
	job_free(j);
}

/* ------------------------------------------------------------------------------------------------ */
/* Mounting                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/* The signal that wakes the libfuse main loop thread out of sem_wait() when we stop it. A real-time
 * signal nobody else in a Node process uses; its handler does nothing. */
static int wake_signal(void) { return SIGRTMIN + 7; }
static void wake_handler(int sig) { (void)sig; }
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static void wake_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = wake_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: sem_wait must return EINTR */
	sigaction(wake_signal(), &sa, NULL);
}

static void *loop_main(void *arg)
{
	sf_mount *m = arg;
	/* only the wake signal reaches our threads (libfuse's workers inherit this mask) */
	sigset_t set;
	sigfillset(&set);
	sigdelset(&set, wake_signal());
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;
	if (cfg) {
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		fuse_loop_cfg_set_max_threads(cfg, m->threads);
		/* keep the workers: creating threads per burst costs more than idle ones */
		fuse_loop_cfg_set_idle_threads(cfg, m->threads);
		rc = fuse_session_loop_mt(m->se, cfg);
		fuse_loop_cfg_destroy(cfg);
	} else {
		rc = -ENOMEM;
	}
	pthread_mutex_lock(&m->order_lock);
	m->loop_rc = rc;
	m->stopping = 1;
	if (!__atomic_load_n(&m->stop_requested, __ATOMIC_ACQUIRE)) {
		/* the session ended by itself (unmounted from outside, connection aborted): tell JavaScript
		 * after every event already queued */
		sf_job *j = job_alloc(m, NULL, EV_EXIT, R_NONE);
		if (j && enqueue(m, j) < 0) job_free(j);
	}
	pthread_mutex_unlock(&m->order_lock);
	return NULL;
}

/* Unescapes a mountinfo field (\040 etc.) in place */
static void mi_unescape(char *s)
{
	char *o = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

/* Finds the topmost mount at path; fills devid ("maj:min") and fstype. Returns 1 if found. Reads
 * /proc/self/mountinfo rather than stat()ing the mount point: a stat could land in our own file system
 * while its loop is not running. */
static int mountinfo_find(const char *path, char *devid, size_t devlen, char *fstype, size_t typelen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) return 0;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint options [optional...] - fstype source superopts */
		char *save = NULL, *tok[5];
		int i = 0;
		char *p = strtok_r(line, " ", &save);
		while (p && i < 5) {
			tok[i++] = p;
			if (i < 5) p = strtok_r(NULL, " ", &save);
		}
		if (i < 5) continue;
		mi_unescape(tok[4]);
		if (strcmp(tok[4], path) != 0) continue;
		char *dash = NULL;
		while ((p = strtok_r(NULL, " ", &save))) {
			if (!strcmp(p, "-")) {
				dash = strtok_r(NULL, " ", &save);
				break;
			}
		}
		snprintf(devid, devlen, "%s", tok[2]);
		snprintf(fstype, typelen, "%s", dash ? dash : "");
		found = 1; /* keep going: later lines are mounted on top */
	}
	free(line);
	fclose(f);
	return found;
}

/* Mounts with fusermount3 (needed for auto_unmount: it stays behind and unmounts when our end of its
 * socket closes, i.e. when this process dies). We spawn it ourselves rather than through libfuse so that
 * our end of the socket is close-on-exec (children of the daemon must not keep the mount alive) and so
 * that we can close it and reap fusermount3 at unmount. Returns the /dev/fuse fd or -1 with msg set. */
static int fusermount(sf_mount *m, const char *opts, char *msg, size_t msglen)
{
	int sv[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(msg, msglen, "socketpair: %s", strerror(errno));
		return -1;
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		snprintf(msg, msglen, "pipe: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	char commfd[48];
	snprintf(commfd, sizeof commfd, "_FUSE_COMMFD=%d", sv[0]);
	size_t nenv = 0;
	while (environ[nenv]) nenv++;
	char **envp = calloc(nenv + 2, sizeof(char *));
	if (!envp) {
		snprintf(msg, msglen, "out of memory");
		close(sv[0]);
		close(sv[1]);
		close(ep[0]);
		close(ep[1]);
		return -1;
	}
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++)
		if (strncmp(environ[i], "_FUSE_COMMFD=", 13) != 0) envp[k++] = environ[i];
	envp[k++] = commfd;
	envp[k] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto itself clears close-on-exec for the child's end only */
	posix_spawn_file_actions_adddup2(&fa, sv[0], sv[0]);
	posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	char *argv[] = {"fusermount3", "-o", (char *)opts, "--", m->path, NULL};
	pid_t pid;
	int rc = posix_spawnp(&pid, "fusermount3", &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	close(sv[0]);
	close(ep[1]);
	if (rc != 0) {
		snprintf(msg, msglen, "cannot run fusermount3 (apt-get install fuse3): %s", strerror(rc));
		close(sv[1]);
		close(ep[0]);
		return -1;
	}
	/* receive the /dev/fuse descriptor */
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof cm.buf;
	ssize_t n;
	do n = recvmsg(sv[1], &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	int fd = -1;
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0) {
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
		char err[1024];
		ssize_t e = read(ep[0], err, sizeof err - 1);
		err[e > 0 ? e : 0] = 0;
		size_t el = strlen(err);
		while (el && (err[el - 1] == '\n' || err[el - 1] == ' ')) err[--el] = 0;
		snprintf(msg, msglen, "fusermount3 failed (exit %d)%s%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			 el ? ": " : "", err);
		close(sv[1]);
		close(ep[0]);
		return -1;
	}
	close(ep[0]); /* fusermount3 stays (quietly) until the socket closes */
	m->comm_fd = sv[1];
	m->fusermount_pid = pid;
	return fd;
}

/* The read-only switch: C answers EROFS to every mutation from now on, and the mount point gets (or
 * loses) the kernel's read-only flag, so the kernel refuses opens for writing itself. Making it read-only
 * fails in the kernel (EBUSY) while a file is open for writing: the C switch still holds then. Returns 0
 * or the kernel's errno. */
static int set_read_only(sf_mount *m, int ro)
{
	struct sf_mount_attr a;
	memset(&a, 0, sizeof a);
	if (ro) {
		__atomic_store_n(&m->read_only, 1, __ATOMIC_RELEASE);
		a.attr_set = SF_MOUNT_ATTR_RDONLY;
	} else {
		a.attr_clr = SF_MOUNT_ATTR_RDONLY;
	}
	int err = 0;
	if (syscall(SYS_mount_setattr, AT_FDCWD, m->path, AT_SYMLINK_NOFOLLOW, &a, sizeof a) < 0) err = errno;
	if (!ro) __atomic_store_n(&m->read_only, 0, __ATOMIC_RELEASE);
	return err;
}

/* FUSE_NOTIFY_INC_EPOCH (Linux 6.16): every dentry the kernel holds for this connection is looked up again */
#define SF_NOTIFY_INC_EPOCH 8

/* The mount turned read-only: from now on its tree may change underneath (the secondary's stream), so
 * what the kernel cached while it was writable must go. Names: the epoch notification (older kernels
 * refuse it, EINVAL: names then expire within entry_timeout). Attributes: every inode we gave the kernel
 * (attributes only: invalidating pages could wait on a write that waits for this very thread). */
static void drop_kernel_cache(sf_mount *m)
{
	if (!m->se || (m->attr_timeout == 0 && m->entry_timeout == 0)) return;
	struct {
		uint32_t len;
		int32_t error;
		uint64_t unique;
	} epoch = {sizeof epoch, SF_NOTIFY_INC_EPOCH, 0};
	if (write(fuse_session_fd(m->se), &epoch, sizeof epoch) < 0) { /* an older kernel: see above */ }
	pthread_mutex_lock(&m->itab_lock);
	for (size_t i = 0; i < m->nbuckets; i++)
		for (sf_inode *in = m->buckets[i]; in; in = in->hnext)
			fuse_lowlevel_notify_inval_inode(m->se, in == &m->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in, -1, 0);
	pthread_mutex_unlock(&m->itab_lock);
}

static void mount_free(sf_mount *m)
{
	free(m->path);
	free(m->name);
	free(m->root_prefix);
	free(m->buckets);
	pthread_mutex_destroy(&m->itab_lock);
	pthread_mutex_destroy(&m->order_lock);
	free(m);
}

/* Open mounts, for the cleanup hook of the Node environment that made them (several environments:
 * worker threads may load the addon too). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static sf_mount *live_mounts;

/* Stops the session, unmounts, answers what is still pending with EIO and releases everything.
 * JS thread; idempotent. */
static void mount_close(sf_mount *m)
{
	if (m->state != ST_OPEN) return;
	m->state = ST_CLOSED;
	pthread_mutex_lock(&live_lock);
	for (sf_mount **p = &live_mounts; *p; p = &(*p)->next_live)
		if (*p == m) {
			*p = m->next_live;
			break;
		}
	pthread_mutex_unlock(&live_lock);
	__atomic_store_n(&m->stop_requested, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&m->order_lock);
	m->stopping = 1;
	pthread_mutex_unlock(&m->order_lock);
	if (m->thread_started) {
		fuse_session_exit(m->se);
		/* the loop thread waits in sem_wait(): signal it until it ends (a signal that lands just before it
		 * starts waiting is lost, hence the repetition) */
		for (;;) {
			pthread_kill(m->thread, wake_signal());
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 20 * 1000 * 1000;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			if (pthread_timedjoin_np(m->thread, NULL, &until) == 0) break;
		}
		m->thread_started = 0;
	}
	/* unmount (lazily: an application may still hold files open), if our mount is still there */
	char devid[32], fstype[64];
	if (m->fuse_devid[0] && mountinfo_find(m->path, devid, sizeof devid, fstype, sizeof fstype) &&
	    !strcmp(devid, m->fuse_devid))
		umount2(m->path, MNT_DETACH | UMOUNT_NOFOLLOW);
	/* answer whatever the kernel still waits for */
	for (uint32_t idx = 0;; idx++) {
		pthread_mutex_lock(&jobs_lock);
		uint32_t n = job_nslots;
		sf_job *j = idx < n ? job_slot(idx) : NULL;
		int mine = j && j->id && j->m == m && !j->replied && j->kind != EV_EXIT && j->reply_kind != R_NONE;
		pthread_mutex_unlock(&jobs_lock);
		if (!j) break;
		if (!mine) continue;
		answer(j, EIO);
		if (j->delivered) job_free(j);
		/* undelivered jobs are freed when the queue reaches them (call_js sees replied) */
	}
	/* closes /dev/fuse: the connection is aborted, applications still inside get ENOTCONN */
	fuse_session_destroy(m->se);
	m->se = NULL;
	if (m->comm_fd >= 0) {
		close(m->comm_fd); /* fusermount3 wakes up, finds nothing of ours mounted, exits */
		m->comm_fd = -1;
	}
	if (m->fusermount_pid > 0) {
		while (waitpid(m->fusermount_pid, NULL, 0) < 0 && errno == EINTR) {}
		m->fusermount_pid = 0;
	}
	/* handles the kernel will never release now, then the inode table */
	while (m->handles) handle_close(m, m->handles);
	for (size_t i = 0; i < m->nbuckets; i++) {
		sf_inode *in = m->buckets[i];
		while (in) {
			sf_inode *nx = in->hnext;
			if (in != &m->root) inode_destroy(in);
			in = nx;
		}
		m->buckets[i] = NULL;
	}
	m->ninodes = 0;
	close(m->root_fd);
	m->root_fd = -1;
	free(m->root.alias_name);
	m->root.alias_name = NULL;
	napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
}

static void mount_unref(napi_env env, sf_mount *m)
{
	if (--m->refs > 0) return;
	if (m->on_exit) napi_delete_reference(env, m->on_exit);
	mount_free(m);
}

/* process.exit() skips the cleanup hooks: stop handing events to an environment that is being torn
 * down (the workers answer EIO); the kernel aborts the connection when the process is gone and
 * fusermount3 unmounts. */
static void at_exit(void)
{
	pthread_mutex_lock(&live_lock);
	for (sf_mount *m = live_mounts; m; m = m->next_live) {
		pthread_mutex_lock(&m->order_lock);
		m->stopping = 1;
		pthread_mutex_unlock(&m->order_lock);
	}
	pthread_mutex_unlock(&live_lock);
}
static pthread_once_t at_exit_once = PTHREAD_ONCE_INIT;
static void at_exit_install(void) { atexit(at_exit); }

/* The environment is going away (process exit, worker thread end): unmount what it still has mounted,
 * so no worker thread calls into a dead environment and no mount is left behind. */
static void env_cleanup(void *arg)
{
	napi_env env = arg;
	for (;;) {
		pthread_mutex_lock(&live_lock);
		sf_mount *m = live_mounts;
		while (m && m->env != env) m = m->next_live;
		pthread_mutex_unlock(&live_lock);
		if (!m) break;
		mount_close(m);
	}
}

/* ------------------------------------------------------------------------------------------------ */
/* N-API: events to JavaScript                                                                      */
/* ------------------------------------------------------------------------------------------------ */

static const char *ev_names[] = {
	[EV_OPEN] = "open",       [EV_CREATE] = "create",       [EV_WRITE] = "write",
	[EV_RELEASE] = "release", [EV_MKNOD] = "mknod",         [EV_MKDIR] = "mkdir",
	[EV_SYMLINK] = "symlink", [EV_LINK] = "link",           [EV_UNLINK] = "unlink",
	[EV_RMDIR] = "rmdir",     [EV_RENAME] = "rename",       [EV_SETATTR] = "setattr",
	[EV_FALLOCATE] = "fallocate", [EV_SETXATTR] = "setxattr", [EV_REMOVEXATTR] = "removexattr",
	[EV_FSYNC] = "fsync",     [EV_FSYNCDIR] = "fsyncdir",
};

static void set_str(napi_env env, napi_value o, const char *k, const char *v)
{
	napi_value x;
	if (v) napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
	else napi_get_null(env, &x);
	napi_set_named_property(env, o, k, x);
}
static void set_num(napi_env env, napi_value o, const char *k, double v)
{
	napi_value x;
	napi_create_double(env, v, &x);
	napi_set_named_property(env, o, k, x);
}
static void set_big(napi_env env, napi_value o, const char *k, int64_t v)
{
	napi_value x;
	napi_create_bigint_int64(env, v, &x);
	napi_set_named_property(env, o, k, x);
}
static void set_bool(napi_env env, napi_value o, const char *k, int v)
{
	napi_value x;
	napi_get_boolean(env, v != 0, &x);
	napi_set_named_property(env, o, k, x);
}
static void free_external(napi_env env, void *data, void *hint) { free(data); }

/* A Buffer over memory we malloc'd: ownership passes to JavaScript (no second copy). */
static void set_owned_buffer(napi_env env, napi_value o, const char *k, void **data, size_t len)
{
	napi_value x;
	if (len == 0) {
		void *p;
		napi_create_buffer(env, 0, &p, &x);
	} else if (napi_create_external_buffer(env, len, *data, free_external, NULL, &x) == napi_ok) {
		*data = NULL;
	} else {
		/* external buffers disallowed in this runtime: fall back to a copy */
		void *p;
		napi_create_buffer_copy(env, len, *data, &p, &x);
	}
	napi_set_named_property(env, o, k, x);
}

static void handle_exit(napi_env env, sf_mount *m)
{
	if (m->state != ST_OPEN) return;
	mount_close(m);
	if (m->on_exit) {
		napi_value fn, undef, res, why;
		if (napi_get_reference_value(env, m->on_exit, &fn) == napi_ok && fn) {
			char reason[160];
			if (m->loop_rc == 0) snprintf(reason, sizeof reason, "the file system was unmounted from outside");
			else snprintf(reason, sizeof reason, "the FUSE session failed: %s", strerror(m->loop_rc < 0 ? -m->loop_rc : m->loop_rc));
			napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &why);
			napi_get_undefined(env, &undef);
			if (napi_call_function(env, undef, fn, 1, &why, &res) == napi_pending_exception) {
				napi_value exc;
				napi_get_and_clear_last_exception(env, &exc);
				napi_fatal_exception(env, exc);
			}
		}
	}
}

static void call_js(napi_env env, napi_value cb, void *context, void *data)
{
	sf_job *j = data;
	sf_mount *m = j->m;
	if (env == NULL) { /* the queue is being dropped (environment teardown) */
		if (!j->replied && !j->js_replied && j->reply_kind != R_NONE && m->se) js_settle(j, EIO);
		else job_free(j);
		return;
	}
	if (j->kind == EV_EXIT) {
		job_free(j);
		handle_exit(env, m);
		return;
	}
	if (j->replied || m->state != ST_OPEN) { /* answered by unmount() while still queued */
		job_free(j);
		return;
	}
	napi_value o, undef, res;
	napi_create_object(env, &o);
	set_str(env, o, "op", ev_names[j->kind]);
	set_num(env, o, "job", j->reply_kind == R_NONE ? 0 : (double)j->id);
	switch (j->kind) {
	case EV_OPEN:
		set_num(env, o, "handle", (double)j->handle);
		set_str(env, o, "path", j->path);
		set_num(env, o, "flags", j->flags);
		if (j->fields & F_MTIME) set_big(env, o, "mtimeNs", j->mtime);
		break;
	case EV_CREATE:
		set_num(env, o, "handle", (double)j->handle);
		set_str(env, o, "path", j->path);
		set_num(env, o, "flags", j->flags);
		set_num(env, o, "mode", j->mode);
		set_num(env, o, "uid", j->uid);
		set_num(env, o, "gid", j->gid);
		set_big(env, o, "mtimeNs", j->mtime);
		break;
	case EV_WRITE:
		set_num(env, o, "handle", (double)j->handle);
		set_num(env, o, "offset", (double)j->offset);
		set_owned_buffer(env, o, "data", &j->data, j->len);
		set_big(env, o, "mtimeNs", j->mtime);
		break;
	case EV_RELEASE:
		set_num(env, o, "handle", (double)j->handle);
		break;
	case EV_MKNOD:
		set_str(env, o, "path", j->path);
		set_num(env, o, "mode", j->mode);
		set_num(env, o, "rdev", (double)j->rdev);
		set_num(env, o, "uid", j->uid);
		set_num(env, o, "gid", j->gid);
		break;
	case EV_MKDIR:
		set_str(env, o, "path", j->path);
		set_num(env, o, "mode", j->mode);
		set_num(env, o, "uid", j->uid);
		set_num(env, o, "gid", j->gid);
		break;
	case EV_SYMLINK:
		set_str(env, o, "path", j->path);
		set_str(env, o, "target", j->path2);
		set_num(env, o, "uid", j->e.attr.st_uid);
		set_num(env, o, "gid", j->e.attr.st_gid);
		break;
	case EV_LINK:
		set_str(env, o, "path", j->path);
		set_str(env, o, "newPath", j->path2);
		break;
	case EV_UNLINK:
	case EV_RMDIR:
		set_str(env, o, "path", j->path);
		break;
	case EV_RENAME:
		set_str(env, o, "path", j->path);
		set_str(env, o, "newPath", j->path2);
		set_num(env, o, "flags", j->flags);
		break;
	case EV_SETATTR:
		if (j->fields & F_HANDLE) set_num(env, o, "handle", (double)j->handle);
		else set_str(env, o, "path", j->path);
		if (j->fields & F_MODE) set_num(env, o, "mode", j->mode);
		if (j->fields & F_UID) set_num(env, o, "uid", j->uid);
		if (j->fields & F_GID) set_num(env, o, "gid", j->gid);
		if (j->fields & F_SIZE) set_num(env, o, "size", (double)j->size);
		if (j->fields & F_ATIME) set_big(env, o, "atimeNs", j->atime);
		if (j->fields & F_MTIME) set_big(env, o, "mtimeNs", j->mtime);
		break;
	case EV_FALLOCATE:
		set_num(env, o, "handle", (double)j->handle);
		set_num(env, o, "mode", j->mode);
		set_num(env, o, "offset", (double)j->offset);
		set_num(env, o, "length", (double)j->length);
		set_big(env, o, "mtimeNs", j->mtime);
		break;
	case EV_SETXATTR:
		set_str(env, o, "path", j->path);
		set_str(env, o, "name", j->name);
		set_owned_buffer(env, o, "value", &j->data, j->len);
		set_num(env, o, "flags", j->flags);
		break;
	case EV_REMOVEXATTR:
		set_str(env, o, "path", j->path);
		set_str(env, o, "name", j->name);
		break;
	case EV_FSYNC:
		if (j->fields & F_HANDLE) set_num(env, o, "handle", (double)j->handle);
		else {
			napi_value nul;
			napi_get_null(env, &nul);
			napi_set_named_property(env, o, "handle", nul);
			set_str(env, o, "path", j->path);
		}
		set_bool(env, o, "datasync", j->datasync);
		break;
	case EV_FSYNCDIR:
		set_str(env, o, "path", j->path);
		set_bool(env, o, "datasync", j->datasync);
		break;
	}
	int no_reply = j->reply_kind == R_NONE;
	uint64_t id = j->id;
	j->delivered = 1;
	/* the strings were copied into JS: drop ours now, the slot may live on until reply() */
	free(j->path);
	free(j->path2);
	free(j->name);
	free(j->data);
	j->path = j->path2 = j->name = NULL;
	j->data = NULL;
	if (no_reply) job_free(j);
	napi_get_undefined(env, &undef);
	if (napi_call_function(env, undef, cb, 1, &o, &res) == napi_pending_exception) {
		/* a throwing handler must not leave the application hanging */
		napi_value exc;
		napi_get_and_clear_last_exception(env, &exc);
		/* by id: the handler may have replied, and the slot been reused, before it threw */
		sf_job *still = no_reply ? NULL : job_find(id);
		if (still && still->delivered && !still->replied && !still->js_replied && m->state == ST_OPEN)
			js_settle(still, EIO);
		napi_fatal_exception(env, exc);
	}
}

static void tsfn_finalize(napi_env env, void *data, void *hint)
{
	mount_unref(env, (sf_mount *)data);
}

static void external_finalize(napi_env env, void *data, void *hint)
{
	mount_unref(env, (sf_mount *)data);
}

/* ------------------------------------------------------------------------------------------------ */
/* N-API: helpers                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

static int is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;
	napi_typeof(env, v, &t);
	return t == napi_null || t == napi_undefined;
}

static napi_value get_prop(napi_env env, napi_value o, const char *k)
{
	napi_value v = NULL;
	napi_get_named_property(env, o, k, &v);
	return v;
}

/* ------------------------------------------------------------------------------------------------ */
/* N-API: mount / reply / unmount / stats                                                           */
/* ------------------------------------------------------------------------------------------------ */

static int valid_name(const char *s)
{
	if (!*s || strlen(s) > 64) return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-' || *s == '.'))
			return 0;
	return 1;
}

static napi_value js_mount(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_valuetype t;
	if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
		return throw_type(env, "mount(options): options must be an object");
	napi_value o = argv[0];
	char path[PATH_MAX], name[80];
	if (get_string(env, get_prop(env, o, "path"), path, sizeof path) < 0 || path[0] != '/')
		return throw_type(env, "mount: options.path must be an absolute path");
	if (get_string(env, get_prop(env, o, "name"), name, sizeof name) < 0 || !valid_name(name))
		return throw_type(env, "mount: options.name must be 1-64 letters, digits, '_', '-' or '.'");
	napi_value on_op = get_prop(env, o, "onOp");
	if (napi_typeof(env, on_op, &t) != napi_ok || t != napi_function)
		return throw_type(env, "mount: options.onOp must be a function");
	napi_value on_exit = get_prop(env, o, "onExit");
	napi_typeof(env, on_exit, &t);
	if (t != napi_function && t != napi_undefined && t != napi_null)
		return throw_type(env, "mount: options.onExit must be a function");
	int has_exit = t == napi_function;
	bool ro = false, debug = false, xattrs = true, hold_metadata = true;
	napi_value v = get_prop(env, o, "readOnly");
	if (!is_nullish(env, v) && napi_get_value_bool(env, v, &ro) != napi_ok)
		return throw_type(env, "mount: options.readOnly must be a boolean");
	/* With extended attributes the kernel asks for security.capability before every write (FUSE clears
	 * SB_NOSEC; only FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate, would let it cache the
	 * answer): one more round trip per write, answered in C. xattrs: false answers ENOSYS once, after which
	 * the kernel stops asking and refuses xattrs itself (EOPNOTSUPP). */
	v = get_prop(env, o, "xattrs");
	if (!is_nullish(env, v) && napi_get_value_bool(env, v, &xattrs) != napi_ok)
		return throw_type(env, "mount: options.xattrs must be a boolean");
	/* holdMetadata false: mutations that change no file data are answered once applied (see enqueue) */
	v = get_prop(env, o, "holdMetadata");
	if (!is_nullish(env, v) && napi_get_value_bool(env, v, &hold_metadata) != napi_ok)
		return throw_type(env, "mount: options.holdMetadata must be a boolean");
	v = get_prop(env, o, "debug");
	if (!is_nullish(env, v) && napi_get_value_bool(env, v, &debug) != napi_ok)
		return throw_type(env, "mount: options.debug must be a boolean");
	double attr_ms = 1000, entry_ms = 1000, threads = 4;
	v = get_prop(env, o, "attrTimeoutMs");
	if (!is_nullish(env, v) && (napi_get_value_double(env, v, &attr_ms) != napi_ok || !(attr_ms >= 0)))
		return throw_type(env, "mount: options.attrTimeoutMs must be a number >= 0");
	v = get_prop(env, o, "entryTimeoutMs");
	if (!is_nullish(env, v) && (napi_get_value_double(env, v, &entry_ms) != napi_ok || !(entry_ms >= 0)))
		return throw_type(env, "mount: options.entryTimeoutMs must be a number >= 0");
	v = get_prop(env, o, "threads");
	if (!is_nullish(env, v) && (napi_get_value_double(env, v, &threads) != napi_ok || !(threads >= 1 && threads <= 64)))
		return throw_type(env, "mount: options.threads must be 1..64");

	char canon[PATH_MAX];
	if (!realpath(path, canon)) return throw_errno(env, errno, "mount", path);
	/* a second mount over a live one would make the first one the "real directory" */
	char mdev[32], mtype[64];
	if (mountinfo_find(canon, mdev, sizeof mdev, mtype, sizeof mtype) && !strcmp(mtype, "fuse.stayup"))
		return throw_errno(env, EBUSY, "mount", canon);

	sf_mount *m = calloc(1, sizeof *m);
	if (!m) return throw_errno(env, ENOMEM, "mount", path);
	pthread_mutex_init(&m->itab_lock, NULL);
	pthread_mutex_init(&m->order_lock, NULL);
	m->comm_fd = -1;
	m->root_fd = -1;
	m->env = env;
	m->threads = (unsigned)threads;
	m->no_xattrs = !xattrs;
	m->hold_metadata = hold_metadata;
	m->attr_timeout = attr_ms / 1000.0;
	m->entry_timeout = entry_ms / 1000.0;
	m->path = strdup(canon);
	m->name = strdup(name);
	m->nbuckets = 1024;
	m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
	if (!m->path || !m->name || !m->buckets) {
		mount_free(m);
		return throw_errno(env, ENOMEM, "mount", path);
	}
	/* the real directory, opened before anything is mounted over it */
	m->root_fd = open(canon, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat rst;
	if (m->root_fd < 0 || fstat(m->root_fd, &rst) < 0) {
		int err = errno;
		if (m->root_fd >= 0) close(m->root_fd);
		mount_free(m);
		return throw_errno(env, err, "mount", canon);
	}
	m->root.fd = m->root_fd;
	m->root.dev = rst.st_dev;
	m->root.ino = rst.st_ino;
	m->root.type = S_IFDIR;
	m->root.nlookup = 1;
	itab_insert(m, &m->root);
	if (refresh_root_prefix(m) < 0) {
		close(m->root_fd);
		mount_free(m);
		return throw_errno(env, EIO, "mount", canon);
	}

	pthread_once(&wake_once, wake_install);
	char *fargv[] = {"stayup", debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(debug ? 2 : 1, fargv);
	m->se = fuse_session_new(&args, &sf_ops, sizeof sf_ops, m);
	if (!m->se) {
		close(m->root_fd);
		mount_free(m);
		napi_throw_error(env, "EIO", "mount: fuse_session_new failed");
		return NULL;
	}
	/* fusermount3 adds nosuid,nodev unless told otherwise: mirror the real file system instead, so that the
	 * application sees the same semantics through the mount as on the directory itself */
	struct statvfs rsv;
	unsigned long rflags = fstatvfs(m->root_fd, &rsv) == 0 ? rsv.f_flag : (ST_NOSUID | ST_NODEV);
	char opts[320];
	/* read-only is a flag of the mount point (see set_read_only), not of the super block: it can be
	 * switched later without a remount, which would sync the file system through our own JS thread */
	snprintf(opts, sizeof opts, "default_permissions,allow_other,fsname=stayup:%s,subtype=stayup,auto_unmount,%s,%s%s",
		 name, (rflags & ST_NOSUID) ? "nosuid" : "suid", (rflags & ST_NODEV) ? "nodev" : "dev",
		 (rflags & ST_NOEXEC) ? ",noexec" : "");
	char msg[1400];
	int ffd = fusermount(m, opts, msg, sizeof msg);
	if (ffd < 0) {
		fuse_session_destroy(m->se);
		close(m->root_fd);
		mount_free(m);
		napi_value e, mv, code;
		char full[PATH_MAX + sizeof msg + 16];
		snprintf(full, sizeof full, "mount %s: %s", canon, msg);
		napi_create_string_utf8(env, full, NAPI_AUTO_LENGTH, &mv);
		napi_create_error(env, NULL, mv, &e);
		napi_create_string_utf8(env, "EMOUNT", NAPI_AUTO_LENGTH, &code);
		napi_set_named_property(env, e, "code", code);
		napi_throw(env, e);
		return NULL;
	}
	char fdpath[40];
	snprintf(fdpath, sizeof fdpath, "/dev/fd/%d", ffd);
	/* libfuse takes over the descriptor (and closes it in fuse_session_destroy) */
	if (fuse_session_mount(m->se, fdpath) != 0) {
		close(ffd);
		umount2(m->path, MNT_DETACH | UMOUNT_NOFOLLOW);
		fuse_session_destroy(m->se);
		close(m->comm_fd);
		waitpid(m->fusermount_pid, NULL, 0);
		close(m->root_fd);
		mount_free(m);
		napi_throw_error(env, "EIO", "mount: fuse_session_mount failed");
		return NULL;
	}
	char fstype[64];
	if (!mountinfo_find(m->path, m->fuse_devid, sizeof m->fuse_devid, fstype, sizeof fstype) ||
	    strcmp(fstype, "fuse.stayup") != 0)
		m->fuse_devid[0] = 0; /* unknown: unmount() then leaves the path alone */
	/* the loop is not running yet: nothing can be applied before the flag is set */
	if (ro) set_read_only(m, 1);

	napi_value resource;
	napi_create_string_utf8(env, "stayup:fuse", NAPI_AUTO_LENGTH, &resource);
	m->refs = 2; /* the threadsafe function and the External */
	if (napi_create_threadsafe_function(env, on_op, NULL, resource, 0, 1, m, tsfn_finalize, m, call_js, &m->tsfn) !=
	    napi_ok) {
		umount2(m->path, MNT_DETACH | UMOUNT_NOFOLLOW);
		fuse_session_destroy(m->se);
		close(m->comm_fd);
		waitpid(m->fusermount_pid, NULL, 0);
		close(m->root_fd);
		mount_free(m);
		napi_throw_error(env, "EIO", "mount: cannot create the threadsafe function");
		return NULL;
	}
	if (has_exit) napi_create_reference(env, on_exit, 1, &m->on_exit);
	m->state = ST_OPEN;
	pthread_mutex_lock(&live_lock);
	m->next_live = live_mounts;
	live_mounts = m;
	pthread_mutex_unlock(&live_lock);
	if (pthread_create(&m->thread, NULL, loop_main, m) != 0) {
		m->refs--; /* no External will own it */
		mount_close(m);
		napi_throw_error(env, "EIO", "mount: cannot start the FUSE thread");
		return NULL;
	}
	m->thread_started = 1;

	napi_value res, ext, num, str;
	NAPI_CALL(env, napi_create_object(env, &res));
	NAPI_CALL(env, napi_create_external(env, m, external_finalize, NULL, &ext));
	napi_set_named_property(env, res, "handle", ext);
	napi_create_int32(env, m->root_fd, &num);
	napi_set_named_property(env, res, "rootFd", num);
	char under[48];
	snprintf(under, sizeof under, "/proc/self/fd/%d", m->root_fd);
	napi_create_string_utf8(env, under, NAPI_AUTO_LENGTH, &str);
	napi_set_named_property(env, res, "underPath", str);
	napi_create_string_utf8(env, m->path, NAPI_AUTO_LENGTH, &str);
	napi_set_named_property(env, res, "path", str);
	return res;
}

static sf_mount *get_mount(napi_env env, napi_value v)
{
	void *p = NULL;
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
	if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
	return p;
}

/* reply(handle, job, errno): answers a pending kernel request. 0 = success. Returns false when the job
 * is no longer pending (the mount was unmounted meanwhile). */
static napi_value js_reply(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], res;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	sf_mount *m = argc >= 3 ? get_mount(env, argv[0]) : NULL;
	if (!m) return throw_type(env, "reply(handle, job, errno): bad mount handle");
	double jd;
	int32_t err;
	if (napi_get_value_double(env, argv[1], &jd) != napi_ok || jd < 1 || jd > 9007199254740991.0 || jd != (double)(uint64_t)jd)
		return throw_type(env, "reply: job must be a positive integer");
	if (napi_get_value_int32(env, argv[2], &err) != napi_ok || err < 0 || err > 4095)
		return throw_type(env, "reply: errno must be 0 or a positive errno number");
	sf_job *j = job_find((uint64_t)jd);
	int ok = j && j->m == m && j->delivered && !j->replied && !j->js_replied && j->reply_kind != R_NONE &&
		 m->state == ST_OPEN;
	if (ok) js_settle(j, err);
	napi_get_boolean(env, ok, &res);
	return res;
}

static napi_value js_unmount(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], undef;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	sf_mount *m = argc >= 1 ? get_mount(env, argv[0]) : NULL;
	if (!m) return throw_type(env, "unmount(handle): bad mount handle");
	mount_close(m);
	napi_get_undefined(env, &undef);
	return undef;
}

/* setReadOnly(handle, readOnly): returns 0, or the errno with which the kernel refused its flag (EBUSY:
 * a file is open for writing; the mount is read-only for C all the same). */
static napi_value js_setReadOnly(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], r;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	sf_mount *m = argc >= 2 ? get_mount(env, argv[0]) : NULL;
	bool ro;
	if (!m || napi_get_value_bool(env, argv[1], &ro) != napi_ok)
		return throw_type(env, "setReadOnly(handle, readOnly: boolean)");
	if (m->state != ST_OPEN) return throw_errno(env, EINVAL, "setReadOnly", m->path);
	int was_ro = __atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE);
	napi_create_int32(env, set_read_only(m, ro), &r);
	if (ro && !was_ro) drop_kernel_cache(m);
	return r;
}

static napi_value js_stats(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], o;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	sf_mount *m = argc >= 1 ? get_mount(env, argv[0]) : NULL;
	if (!m) return throw_type(env, "stats(handle): bad mount handle");
	napi_create_object(env, &o);
	pthread_mutex_lock(&m->order_lock);
	uint64_t ev = m->st_events, w = m->st_writes, wb = m->st_write_bytes;
	pthread_mutex_unlock(&m->order_lock);
	pthread_mutex_lock(&m->itab_lock);
	size_t ni = m->ninodes;
	pthread_mutex_unlock(&m->itab_lock);
	uint32_t pending = 0;
	pthread_mutex_lock(&jobs_lock);
	for (uint32_t i = 0; i < job_nslots; i++) {
		sf_job *j = job_slot(i);
		if (j->id && j->m == m && !j->replied && j->reply_kind != R_NONE) pending++;
	}
	pthread_mutex_unlock(&jobs_lock);
	set_num(env, o, "events", (double)ev);
	set_num(env, o, "writes", (double)w);
	set_num(env, o, "writeBytes", (double)wb);
	set_num(env, o, "inodes", (double)ni);
	set_num(env, o, "pendingJobs", pending);
	set_bool(env, o, "mounted", m->state == ST_OPEN);
	set_bool(env, o, "readOnly", __atomic_load_n(&m->read_only, __ATOMIC_ACQUIRE));
	return o;
}

/* ------------------------------------------------------------------------------------------------ */
/* Peer-side helpers: synchronous, relative to a root fd, resolution confined beneath the root        */
/* ------------------------------------------------------------------------------------------------ */

static int open_beneath(int root, const char *rel, int flags, mode_t mode)
{
	struct open_how how;
	memset(&how, 0, sizeof how);
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	how.mode = (flags & (O_CREAT | __O_TMPFILE)) ? (mode & 07777) : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	int fd;
	do fd = (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
	while (fd < 0 && errno == EINTR);
	return fd;
}

/* Opens the directory holding rel's last component (beneath root) and points *name at that component.
 * buf holds a copy of rel. Returns the dir fd, or -errno. The last component may not be "", "." or "..". */
static int open_parent(int root, const char *rel, char *buf, size_t buflen, const char **name)
{
	size_t n = strlen(rel);
	if (n == 0 || n >= buflen) return -EINVAL;
	memcpy(buf, rel, n + 1);
	while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
	char *slash = strrchr(buf, '/');
	const char *dir;
	if (slash) {
		*slash = 0;
		*name = slash + 1;
		dir = buf;
	} else {
		*name = buf;
		dir = "";
	}
	if (!strcmp(*name, "..")) return -EXDEV; /* would leave the parent: never beneath-safe */
	if (!**name || !strcmp(*name, ".")) return -EINVAL;
	int fd = open_beneath(root, dir, O_PATH | O_DIRECTORY, 0);
	return fd < 0 ? -errno : fd;
}

/* Common argument parsing for helpers: (root, rel, ...) */
struct hargs {
	int root;
	char rel[PATH_MAX];
};

static int get_fd(napi_env env, napi_value v, int *fd)
{
	int32_t x;
	if (napi_get_value_int32(env, v, &x) != napi_ok || x < 0) return -1;
	*fd = x;
	return 0;
}

#define HELPER_ARGS(N)                                                          \
	size_t argc = N;                                                        \
	napi_value argv[N];                                                     \
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));   \
	if (argc < N) return throw_type(env, "missing arguments");

static napi_value undefined(napi_env env)
{
	napi_value u;
	napi_get_undefined(env, &u);
	return u;
}

static napi_value js_openRoot(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(1);
	char path[PATH_MAX];
	if (get_string(env, argv[0], path, sizeof path) < 0) return throw_type(env, "openRoot(path): path must be a string");
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) return throw_errno(env, errno, "openRoot", path);
	napi_value r;
	napi_create_int32(env, fd, &r);
	return r;
}

static int root_rel(napi_env env, napi_value *argv, struct hargs *a)
{
	if (get_fd(env, argv[0], &a->root) < 0) return -1;
	if (get_string(env, argv[1], a->rel, sizeof a->rel) < 0) return -1;
	return 0;
}

static napi_value js_openAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	struct hargs a;
	int32_t flags, mode;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_int32(env, argv[2], &flags) != napi_ok ||
	    napi_get_value_int32(env, argv[3], &mode) != napi_ok)
		return throw_type(env, "openAt(root, rel, flags, mode)");
	int fd;
	if (flags & O_CREAT) {
		/* exact mode for a file we create (the process umask must not apply): learn whether we
		 * created it, then chmod */
		fd = open_beneath(a.root, a.rel, (flags | O_EXCL), (mode_t)mode);
		if (fd >= 0) {
			if (fchmod(fd, (mode_t)mode & 07777) < 0) {
				int err = errno;
				close(fd);
				return throw_errno(env, err, "openAt", a.rel);
			}
		} else if (errno == EEXIST && !(flags & O_EXCL)) {
			fd = open_beneath(a.root, a.rel, flags & ~O_CREAT, 0);
		}
	} else {
		fd = open_beneath(a.root, a.rel, flags, 0);
	}
	if (fd < 0) return throw_errno(env, errno, "openAt", a.rel);
	napi_value r;
	napi_create_int32(env, fd, &r);
	return r;
}

static napi_value js_mkdirAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	int32_t mode;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_int32(env, argv[2], &mode) != napi_ok)
		return throw_type(env, "mkdirAt(root, rel, mode)");
	char buf[PATH_MAX];
	const char *name;
	int dfd = open_parent(a.root, a.rel, buf, sizeof buf, &name);
	if (dfd < 0) return throw_errno(env, -dfd, "mkdirAt", a.rel);
	int rc = mkdirat(dfd, name, (mode_t)mode & 07777);
	/* exactly this mode (including a set-group-ID bit), whatever the umask and the parent */
	if (rc == 0) rc = fchmodat(dfd, name, (mode_t)mode & 07777, 0);
	int err = errno;
	close(dfd);
	if (rc < 0) return throw_errno(env, err, "mkdirAt", a.rel);
	return undefined(env);
}

static napi_value js_mknodAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	struct hargs a;
	int32_t mode;
	int64_t rdev;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_int32(env, argv[2], &mode) != napi_ok ||
	    get_int64(env, argv[3], &rdev) < 0)
		return throw_type(env, "mknodAt(root, rel, mode, rdev)");
	char buf[PATH_MAX];
	const char *name;
	int dfd = open_parent(a.root, a.rel, buf, sizeof buf, &name);
	if (dfd < 0) return throw_errno(env, -dfd, "mknodAt", a.rel);
	int rc = mknodat(dfd, name, (mode_t)mode, (dev_t)rdev);
	if (rc == 0) rc = fchmodat(dfd, name, (mode_t)mode & 07777, 0);
	int err = errno;
	close(dfd);
	if (rc < 0) return throw_errno(env, err, "mknodAt", a.rel);
	return undefined(env);
}

static napi_value js_symlinkAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	char target[PATH_MAX];
	struct hargs a;
	if (get_string(env, argv[0], target, sizeof target) < 0 || root_rel(env, argv + 1, &a) < 0)
		return throw_type(env, "symlinkAt(target, root, rel)");
	char buf[PATH_MAX];
	const char *name;
	int dfd = open_parent(a.root, a.rel, buf, sizeof buf, &name);
	if (dfd < 0) return throw_errno(env, -dfd, "symlinkAt", a.rel);
	int rc = symlinkat(target, dfd, name);
	int err = errno;
	close(dfd);
	if (rc < 0) return throw_errno(env, err, "symlinkAt", a.rel);
	return undefined(env);
}

static napi_value js_linkAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	char newrel[PATH_MAX];
	if (root_rel(env, argv, &a) < 0 || get_string(env, argv[2], newrel, sizeof newrel) < 0)
		return throw_type(env, "linkAt(root, oldRel, newRel)");
	char b1[PATH_MAX], b2[PATH_MAX];
	const char *n1, *n2;
	int d1 = open_parent(a.root, a.rel, b1, sizeof b1, &n1);
	if (d1 < 0) return throw_errno(env, -d1, "linkAt", a.rel);
	int d2 = open_parent(a.root, newrel, b2, sizeof b2, &n2);
	if (d2 < 0) {
		close(d1);
		return throw_errno(env, -d2, "linkAt", newrel);
	}
	int rc = linkat(d1, n1, d2, n2, 0);
	int err = errno;
	close(d1);
	close(d2);
	if (rc < 0) return throw_errno(env, err, "linkAt", a.rel);
	return undefined(env);
}

static napi_value js_unlinkAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	bool isdir;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_bool(env, argv[2], &isdir) != napi_ok)
		return throw_type(env, "unlinkAt(root, rel, isDir)");
	char buf[PATH_MAX];
	const char *name;
	int dfd = open_parent(a.root, a.rel, buf, sizeof buf, &name);
	if (dfd < 0) return throw_errno(env, -dfd, isdir ? "rmdirAt" : "unlinkAt", a.rel);
	int rc = unlinkat(dfd, name, isdir ? AT_REMOVEDIR : 0);
	int err = errno;
	close(dfd);
	if (rc < 0) return throw_errno(env, err, isdir ? "rmdirAt" : "unlinkAt", a.rel);
	return undefined(env);
}

static napi_value js_renameAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	struct hargs a;
	char newrel[PATH_MAX];
	uint32_t flags;
	if (root_rel(env, argv, &a) < 0 || get_string(env, argv[2], newrel, sizeof newrel) < 0 ||
	    napi_get_value_uint32(env, argv[3], &flags) != napi_ok)
		return throw_type(env, "renameAt(root, oldRel, newRel, flags)");
	char b1[PATH_MAX], b2[PATH_MAX];
	const char *n1, *n2;
	int d1 = open_parent(a.root, a.rel, b1, sizeof b1, &n1);
	if (d1 < 0) return throw_errno(env, -d1, "renameAt", a.rel);
	int d2 = open_parent(a.root, newrel, b2, sizeof b2, &n2);
	if (d2 < 0) {
		close(d1);
		return throw_errno(env, -d2, "renameAt", newrel);
	}
	int rc = (int)syscall(SYS_renameat2, d1, n1, d2, n2, flags);
	int err = errno;
	close(d1);
	close(d2);
	if (rc < 0) return throw_errno(env, err, "renameAt", a.rel);
	return undefined(env);
}

/* The object itself (no follow of a final symlink), beneath root, as an O_PATH fd. */
static int open_object(int root, const char *rel)
{
	return open_beneath(root, rel, O_PATH | O_NOFOLLOW, 0);
}

static napi_value js_chownAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	struct hargs a;
	int32_t uid, gid;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_int32(env, argv[2], &uid) != napi_ok ||
	    napi_get_value_int32(env, argv[3], &gid) != napi_ok)
		return throw_type(env, "chownAt(root, rel, uid, gid)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "chownAt", a.rel);
	int rc = fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	int err = errno;
	close(fd);
	if (rc < 0) return throw_errno(env, err, "chownAt", a.rel);
	return undefined(env);
}

static napi_value js_chmodAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	int32_t mode;
	if (root_rel(env, argv, &a) < 0 || napi_get_value_int32(env, argv[2], &mode) != napi_ok)
		return throw_type(env, "chmodAt(root, rel, mode)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "chmodAt", a.rel);
	struct stat st;
	int rc = fstat(fd, &st);
	int err = errno;
	if (rc == 0 && !S_ISLNK(st.st_mode)) { /* symlinks have no mode of their own on Linux */
		char pp[40];
		proc_fd_path(pp, fd);
		rc = chmod(pp, (mode_t)mode & 07777);
		err = errno;
	}
	close(fd);
	if (rc < 0) return throw_errno(env, err, "chmodAt", a.rel);
	return undefined(env);
}

static int get_time_arg(napi_env env, napi_value v, struct timespec *ts)
{
	if (is_nullish(env, v)) {
		ts->tv_sec = 0;
		ts->tv_nsec = UTIME_OMIT;
		return 0;
	}
	int64_t ns;
	if (get_int64(env, v, &ns) < 0) return -1;
	*ts = ns_ts(ns);
	return 0;
}

static napi_value js_utimensAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	struct hargs a;
	struct timespec tv[2];
	if (root_rel(env, argv, &a) < 0 || get_time_arg(env, argv[2], &tv[0]) < 0 || get_time_arg(env, argv[3], &tv[1]) < 0)
		return throw_type(env, "utimensAt(root, rel, atimeNs|null, mtimeNs|null)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "utimensAt", a.rel);
	int rc = utimensat(fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	int err = errno;
	close(fd);
	if (rc < 0) return throw_errno(env, err, "utimensAt", a.rel);
	return undefined(env);
}

static napi_value js_truncateAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	int64_t size;
	if (root_rel(env, argv, &a) < 0 || get_int64(env, argv[2], &size) < 0)
		return throw_type(env, "truncateAt(root, rel, size)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "truncateAt", a.rel);
	struct stat st;
	int rc = fstat(fd, &st), err = errno;
	if (rc == 0 && S_ISLNK(st.st_mode)) {
		rc = -1;
		err = EINVAL;
	} else if (rc == 0) {
		char pp[40];
		proc_fd_path(pp, fd);
		rc = truncate(pp, size);
		err = errno;
	}
	close(fd);
	if (rc < 0) return throw_errno(env, err, "truncateAt", a.rel);
	return undefined(env);
}

static napi_value js_setxattrAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(5);
	struct hargs a;
	char name[XATTR_NAME_MAX + 2];
	void *data;
	size_t len;
	int32_t flags;
	bool isbuf;
	if (root_rel(env, argv, &a) < 0 || get_string(env, argv[2], name, sizeof name) < 0 ||
	    napi_is_buffer(env, argv[3], &isbuf) != napi_ok || !isbuf ||
	    napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok || napi_get_value_int32(env, argv[4], &flags) != napi_ok)
		return throw_type(env, "setxattrAt(root, rel, name, value: Buffer, flags)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "setxattrAt", a.rel);
	char pp[40];
	proc_fd_path(pp, fd); /* the magic link reaches the object itself, a symlink included */
	int rc = setxattr(pp, name, data, len, flags), err = errno;
	close(fd);
	if (rc < 0) return throw_errno(env, err, "setxattrAt", a.rel);
	return undefined(env);
}

static napi_value js_removexattrAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	char name[XATTR_NAME_MAX + 2];
	if (root_rel(env, argv, &a) < 0 || get_string(env, argv[2], name, sizeof name) < 0)
		return throw_type(env, "removexattrAt(root, rel, name)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "removexattrAt", a.rel);
	char pp[40];
	proc_fd_path(pp, fd);
	int rc = removexattr(pp, name), err = errno;
	close(fd);
	if (rc < 0) return throw_errno(env, err, "removexattrAt", a.rel);
	return undefined(env);
}

static napi_value js_getxattrAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	struct hargs a;
	char name[XATTR_NAME_MAX + 2];
	if (root_rel(env, argv, &a) < 0 || get_string(env, argv[2], name, sizeof name) < 0)
		return throw_type(env, "getxattrAt(root, rel, name)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "getxattrAt", a.rel);
	char pp[40];
	proc_fd_path(pp, fd);
	char *buf = NULL;
	ssize_t n;
	int err = 0;
	for (;;) { /* the value may grow between the size probe and the read */
		n = getxattr(pp, name, NULL, 0);
		if (n < 0) {
			err = errno;
			break;
		}
		free(buf);
		buf = malloc(n ? (size_t)n : 1);
		if (!buf) {
			err = ENOMEM;
			break;
		}
		ssize_t got = getxattr(pp, name, buf, (size_t)n);
		if (got >= 0) {
			n = got;
			break;
		}
		if (errno != ERANGE) {
			err = errno;
			break;
		}
	}
	close(fd);
	if (err) {
		free(buf);
		return throw_errno(env, err, "getxattrAt", a.rel);
	}
	napi_value r;
	void *p;
	napi_create_buffer_copy(env, (size_t)n, buf, &p, &r);
	free(buf);
	return r;
}

static napi_value js_listxattrAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	struct hargs a;
	if (root_rel(env, argv, &a) < 0) return throw_type(env, "listxattrAt(root, rel)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "listxattrAt", a.rel);
	char pp[40];
	proc_fd_path(pp, fd);
	char *buf = NULL;
	ssize_t n;
	int err = 0;
	for (;;) {
		n = listxattr(pp, NULL, 0);
		if (n < 0) {
			err = errno;
			break;
		}
		free(buf);
		buf = malloc(n ? (size_t)n : 1);
		if (!buf) {
			err = ENOMEM;
			break;
		}
		ssize_t got = listxattr(pp, buf, (size_t)n);
		if (got >= 0) {
			n = got;
			break;
		}
		if (errno != ERANGE) {
			err = errno;
			break;
		}
	}
	close(fd);
	if (err) {
		free(buf);
		return throw_errno(env, err, "listxattrAt", a.rel);
	}
	napi_value arr;
	napi_create_array(env, &arr);
	uint32_t k = 0;
	for (ssize_t i = 0; i < n;) {
		size_t l = strnlen(buf + i, (size_t)(n - i));
		if (l) {
			napi_value s;
			napi_create_string_utf8(env, buf + i, l, &s);
			napi_set_element(env, arr, k++, s);
		}
		i += (ssize_t)l + 1;
	}
	free(buf);
	return arr;
}

static const char *type_name(mode_t m)
{
	if (S_ISREG(m)) return "file";
	if (S_ISDIR(m)) return "dir";
	if (S_ISLNK(m)) return "symlink";
	return "other";
}

static napi_value js_lstatAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	struct hargs a;
	if (root_rel(env, argv, &a) < 0) return throw_type(env, "lstatAt(root, rel)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "lstatAt", a.rel);
	struct stat st;
	int rc = fstat(fd, &st), err = errno;
	close(fd);
	if (rc < 0) return throw_errno(env, err, "lstatAt", a.rel);
	napi_value o;
	napi_create_object(env, &o);
	set_str(env, o, "type", type_name(st.st_mode));
	set_num(env, o, "mode", st.st_mode);
	set_num(env, o, "uid", st.st_uid);
	set_num(env, o, "gid", st.st_gid);
	set_num(env, o, "size", (double)st.st_size);
	set_num(env, o, "nlink", (double)st.st_nlink);
	set_num(env, o, "ino", (double)st.st_ino);
	set_num(env, o, "dev", (double)st.st_dev);
	set_num(env, o, "rdev", (double)st.st_rdev);
	set_big(env, o, "mtimeNs", ts_ns(&st.st_mtim));
	set_big(env, o, "ctimeNs", ts_ns(&st.st_ctim));
	set_big(env, o, "atimeNs", ts_ns(&st.st_atim));
	return o;
}

static napi_value js_readdirAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	struct hargs a;
	if (root_rel(env, argv, &a) < 0) return throw_type(env, "readdirAt(root, rel)");
	int fd = open_beneath(a.root, a.rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	if (fd < 0) return throw_errno(env, errno, "readdirAt", a.rel);
	napi_value arr;
	napi_create_array(env, &arr);
	uint32_t k = 0;
	char buf[32768];
	long n;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			off += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
			const char *ty;
			switch (d->d_type) {
			case DT_REG: ty = "file"; break;
			case DT_DIR: ty = "dir"; break;
			case DT_LNK: ty = "symlink"; break;
			case DT_UNKNOWN: {
				struct stat st;
				ty = fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? type_name(st.st_mode) : "other";
				break;
			}
			default: ty = "other";
			}
			napi_value e;
			napi_create_object(env, &e);
			set_str(env, e, "name", d->d_name);
			set_str(env, e, "type", ty);
			napi_set_element(env, arr, k++, e);
		}
	}
	int err = n < 0 ? errno : 0;
	close(fd);
	if (err) return throw_errno(env, err, "readdirAt", a.rel);
	return arr;
}

static napi_value js_readlinkAt(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	struct hargs a;
	if (root_rel(env, argv, &a) < 0) return throw_type(env, "readlinkAt(root, rel)");
	int fd = open_object(a.root, a.rel);
	if (fd < 0) return throw_errno(env, errno, "readlinkAt", a.rel);
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(fd, "", buf, PATH_MAX);
	int err = errno;
	struct stat st;
	/* the empty-path form answers ENOENT for a non-symlink; readlink(2) says EINVAL */
	if (n < 0 && err == ENOENT && fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode)) err = EINVAL;
	close(fd);
	if (n < 0) return throw_errno(env, err, "readlinkAt", a.rel);
	napi_value s;
	napi_create_string_utf8(env, buf, (size_t)n, &s);
	return s;
}

static napi_value js_fallocate(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(4);
	int fd;
	int32_t mode;
	int64_t off, len;
	if (get_fd(env, argv[0], &fd) < 0 || napi_get_value_int32(env, argv[1], &mode) != napi_ok ||
	    get_int64(env, argv[2], &off) < 0 || get_int64(env, argv[3], &len) < 0)
		return throw_type(env, "fallocate(fd, mode, offset, length)");
	if (fallocate(fd, mode, off, len) < 0) return throw_errno(env, errno, "fallocate", NULL);
	return undefined(env);
}

/* Where a file holds data in [offset, offset + length): [scannedTo, start0, end0, start1, end1, ...]. Everything
 * in [offset, scannedTo) outside the pairs is a hole (reads as zeros); past scannedTo nothing is said (at
 * most DATA_RANGES_MAX pairs per call: the caller asks again from there, or treats the rest as data). A
 * file system without SEEK_DATA reports the whole file as data (lseek's generic answer). */
#define DATA_RANGES_MAX 4096
static napi_value js_dataRanges(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	int fd;
	int64_t off, len;
	if (get_fd(env, argv[0], &fd) < 0 || get_int64(env, argv[1], &off) < 0 || get_int64(env, argv[2], &len) < 0 ||
	    off < 0 || len < 0 || off > INT64_MAX - len)
		return throw_type(env, "dataRanges(fd, offset, length)");
	const int64_t end = off + len;
	napi_value out;
	napi_create_array(env, &out);
	uint32_t k = 1;
	int64_t at = off, scanned = end;
	while (at < end) {
		if (k >= 1 + 2 * DATA_RANGES_MAX) {
			scanned = at;
			break;
		}
		off_t d = lseek(fd, at, SEEK_DATA);
		if (d < 0 && errno == ENXIO) break; /* no data from here to the end of the file */
		off_t h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
		if (d < 0 || h < 0) {
			/* a file system that cannot say (EINVAL, EOPNOTSUPP): all of it is data, read as before */
			if (errno != EINVAL && errno != EOPNOTSUPP) return throw_errno(env, errno, "dataRanges", NULL);
			d = at;
			h = end;
		}
		if (d >= end) break;
		napi_value a, b;
		napi_create_double(env, (double)d, &a);
		napi_create_double(env, (double)(h < end ? h : end), &b);
		napi_set_element(env, out, k++, a);
		napi_set_element(env, out, k++, b);
		at = h;
	}
	napi_value sv;
	napi_create_double(env, (double)scanned, &sv);
	napi_set_element(env, out, 0, sv);
	return out;
}

static napi_value js_futimens(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	int fd;
	struct timespec tv[2];
	if (get_fd(env, argv[0], &fd) < 0 || get_time_arg(env, argv[1], &tv[0]) < 0 || get_time_arg(env, argv[2], &tv[1]) < 0)
		return throw_type(env, "futimens(fd, atimeNs|null, mtimeNs|null)");
	if (futimens(fd, tv) < 0) return throw_errno(env, errno, "futimens", NULL);
	return undefined(env);
}

static napi_value js_fchown(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	int fd;
	int32_t uid, gid;
	if (get_fd(env, argv[0], &fd) < 0 || napi_get_value_int32(env, argv[1], &uid) != napi_ok ||
	    napi_get_value_int32(env, argv[2], &gid) != napi_ok)
		return throw_type(env, "fchown(fd, uid, gid)");
	if (fchown(fd, (uid_t)uid, (gid_t)gid) < 0) return throw_errno(env, errno, "fchown", NULL);
	return undefined(env);
}

static napi_value js_fchmod(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	int fd;
	int32_t mode;
	if (get_fd(env, argv[0], &fd) < 0 || napi_get_value_int32(env, argv[1], &mode) != napi_ok)
		return throw_type(env, "fchmod(fd, mode)");
	if (fchmod(fd, (mode_t)mode & 07777) < 0) return throw_errno(env, errno, "fchmod", NULL);
	return undefined(env);
}

static napi_value js_fsync(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(2);
	int fd;
	bool ds;
	if (get_fd(env, argv[0], &fd) < 0 || napi_get_value_bool(env, argv[1], &ds) != napi_ok)
		return throw_type(env, "fsync(fd, datasync)");
	if ((ds ? fdatasync(fd) : fsync(fd)) < 0) return throw_errno(env, errno, ds ? "fdatasync" : "fsync", NULL);
	return undefined(env);
}

static napi_value js_pwrite(napi_env env, napi_callback_info info)
{
	HELPER_ARGS(3);
	int fd;
	int64_t off;
	void *data;
	size_t len;
	bool isbuf;
	if (get_fd(env, argv[0], &fd) < 0 || napi_is_buffer(env, argv[1], &isbuf) != napi_ok || !isbuf ||
	    napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || get_int64(env, argv[2], &off) < 0 || off < 0)
		return throw_type(env, "pwrite(fd, buffer, offset)");
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (char *)data + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR) continue;
			return throw_errno(env, errno, "pwrite", NULL);
		}
		if (n == 0) return throw_errno(env, EIO, "pwrite", NULL);
		done += (size_t)n;
	}
	napi_value r;
	napi_create_double(env, (double)done, &r);
	return r;
}

/* ------------------------------------------------------------------------------------------------ */

static napi_value init_module(napi_env env, napi_value exports)
{
	napi_add_env_cleanup_hook(env, env_cleanup, env);
	pthread_once(&at_exit_once, at_exit_install);
	napi_property_descriptor props[] = {
#define FN(n) {#n, NULL, js_##n, NULL, NULL, NULL, napi_enumerable, NULL}
		FN(mount),     FN(reply),      FN(unmount),       FN(stats),         FN(setReadOnly), FN(openRoot),
		FN(openAt),    FN(mkdirAt),    FN(mknodAt),       FN(symlinkAt),     FN(linkAt),
		FN(unlinkAt),  FN(renameAt),   FN(chownAt),       FN(chmodAt),       FN(utimensAt),
		FN(truncateAt), FN(setxattrAt), FN(removexattrAt), FN(getxattrAt),   FN(listxattrAt),
		FN(lstatAt),   FN(readdirAt),  FN(readlinkAt),    FN(fallocate),     FN(futimens),
		FN(fchown),    FN(fchmod),     FN(fsync),         FN(pwrite),      FN(dataRanges),
#undef FN
	};
	napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
