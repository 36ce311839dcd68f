/*
 * spool: segment files on disk, replayed oldest first. See spool.h for the
 * format, limits, delivery and failure rules.
 *
 * In memory: one struct seg per segment file (sorted by sequence number, the
 * one being written last) and one struct item per entry handed out and not
 * yet acknowledged. A segment's entries are not indexed: read_off is where the
 * next one to hand out starts, and the counters say how many are read and
 * acknowledged. The ack cursor is the offset of the first unacknowledged entry
 * of the oldest segment: min(read_off, offsets of its items).
 */
#include "spool.h"

#include "map.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define ENT_MAGIC 0x50534741u /* "AGSP" */
#define ACK_MAGIC 0x4b434141u /* "AACK" */
#define ACK_NAME "ack-cursor"
#define DEAD_DIR "dead"
#define SEG_NAME_LEN 20 /* 16 hex digits + ".seg" */
#define MAX_PENDING 16 /* rotated segments waiting for spool_sync */
#define SCAN_CHUNK 65536

struct ent_hdr {
	uint32_t magic;
	uint32_t len;
	uint32_t nrecords;
	uint32_t reserved; /* 0 */
	int64_t time_ns;
	uint32_t crc; /* crc32 of this header (crc = 0) and the blob */
	uint32_t pad; /* 0 */
};
_Static_assert(sizeof(struct ent_hdr) == SPOOL_ENTRY_HDR, "entry header is 32 bytes");

struct ack_rec {
	uint32_t magic;
	uint32_t version; /* 1 */
	uint64_t seq;
	uint64_t off;
	uint32_t crc; /* crc32 of the fields above */
	uint32_t pad;
};
_Static_assert(sizeof(struct ack_rec) == 32, "ack record is 32 bytes");

struct seg {
	uint64_t seq;
	uint64_t size; /* whole entries, bytes */
	uint64_t entries, records;
	uint64_t acked_entries, acked_records;
	uint64_t read_off; /* next entry to hand out */
	uint64_t read_entries, read_records;
	int64_t first_ns; /* first entry (first unacknowledged one at recovery) */
};

struct item {
	uint64_t id;
	uint64_t seq;
	uint64_t off;
	uint32_t nrecords;
	bool nacked;
};

struct spool {
	pthread_mutex_t mu;
	int dirfd;
	int fsync_mode;
	uint64_t max_bytes;
	uint64_t segment_bytes;
	uint64_t bytes;

	struct seg *segs; /* oldest first; the one being written is last */
	size_t nsegs, segcap;
	bool has_cur;
	int wfd; /* segment being written */
	bool cur_dirty; /* written since the last sync */
	bool cur_broken; /* could not be cut back after a failed write: rotate */

	int rfd; /* cached read fd of segment rseq */
	uint64_t rseq;

	int pending[MAX_PENDING]; /* rotated, not yet synced */
	size_t npending;
	bool dir_dirty;

	int ackfd;
	bool ack_valid;
	bool ack_dirty;
	uint64_t ack_seq, ack_off;

	struct item *items;
	size_t nitems, itemcap;
	uint64_t next_id, next_seq;

	struct spool_stats st;
};

/* ---- small helpers ---- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void seg_name(char out[SEG_NAME_LEN + 1], uint64_t seq)
{
	snprintf(out, SEG_NAME_LEN + 1, "%016" PRIx64 ".seg", seq);
}

static bool parse_seg_name(const char *name, uint64_t *seq)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	if (strcmp(name + 16, ".seg") != 0)
		return false;
	*seq = v;
	return true;
}

static uint32_t hdr_crc(const struct ent_hdr *h)
{
	struct ent_hdr t = *h;
	t.crc = 0;
	return (uint32_t)crc32_z(0, (const Bytef *)&t, sizeof(t));
}

static uint32_t ack_crc(const struct ack_rec *a)
{
	return (uint32_t)crc32_z(0, (const Bytef *)a, offsetof(struct ack_rec, crc));
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EBADMSG; /* shorter than it should be */
		done += (size_t)r;
	}
	return 0;
}

/* Write iov[0..cnt) at off; -errno on failure (some bytes may be written). */
static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt > 0) {
		ssize_t r = pwritev(fd, iov, cnt, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		off += (uint64_t)r;
		size_t left = (size_t)r;
		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static void note_error(struct spool *s, int err)
{
	s->st.write_errors++;
	s->st.last_error = err;
}

/* ---- segments ---- */

static bool seg_done(const struct seg *g)
{
	return g->acked_entries == g->entries && g->read_off == g->size;
}

static struct seg *find_seg(struct spool *s, uint64_t seq)
{
	size_t lo = 0, hi = s->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->segs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nsegs && s->segs[lo].seq == seq ? &s->segs[lo] : NULL;
}

static int segs_reserve(struct spool *s)
{
	if (s->nsegs < s->segcap)
		return 0;
	size_t cap = s->segcap ? s->segcap * 2 : 16;
	struct seg *p = realloc(s->segs, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->segs = p;
	s->segcap = cap;
	return 0;
}

static void close_rfd(struct spool *s)
{
	if (s->rfd >= 0)
		close(s->rfd);
	s->rfd = -1;
}

/* Forget items of segment seq (it is going away). */
static void drop_items(struct spool *s, uint64_t seq)
{
	size_t j = 0;
	for (size_t i = 0; i < s->nitems; i++)
		if (s->items[i].seq != seq)
			s->items[j++] = s->items[i];
	s->nitems = j;
}

/* Unlink segment i and forget it. The caller closed wfd if it was current. */
static void remove_seg(struct spool *s, size_t i)
{
	struct seg *g = &s->segs[i];
	char name[SEG_NAME_LEN + 1];
	seg_name(name, g->seq);
	if (s->rfd >= 0 && s->rseq == g->seq)
		close_rfd(s);
	unlinkat(s->dirfd, name, 0);
	s->dir_dirty = true;
	drop_items(s, g->seq);
	s->bytes -= g->size;
	if (s->has_cur && i == s->nsegs - 1)
		s->has_cur = false;
	memmove(&s->segs[i], &s->segs[i + 1], (s->nsegs - i - 1) * sizeof(*g));
	s->nsegs--;
}

/* Persist where delivery of the oldest segment got to, if it moved. */
static void ack_update(struct spool *s)
{
	if (s->nsegs == 0 || s->ackfd < 0)
		return;
	const struct seg *g = &s->segs[0];
	uint64_t off = g->read_off;
	for (size_t i = 0; i < s->nitems; i++)
		if (s->items[i].seq == g->seq && s->items[i].off < off)
			off = s->items[i].off;
	if (s->ack_valid && s->ack_seq == g->seq && s->ack_off == off)
		return;
	struct ack_rec a = {.magic = ACK_MAGIC, .version = 1, .seq = g->seq, .off = off};
	a.crc = ack_crc(&a);
	ssize_t r = pwrite(s->ackfd, &a, sizeof(a), 0);
	if (r == (ssize_t)sizeof(a)) {
		s->ack_valid = true;
		s->ack_seq = g->seq;
		s->ack_off = off;
		s->ack_dirty = true;
	}
	/* On failure the old cursor stays: it only replays more. */
}

/* Unlink segment g if everything in it is acknowledged (not the one being written). */
static void maybe_release(struct spool *s, struct seg *g)
{
	size_t i = (size_t)(g - s->segs);
	if (s->has_cur && i == s->nsegs - 1)
		return;
	if (seg_done(g))
		remove_seg(s, i);
}

static void sync_fd_now(struct spool *s, int fd)
{
	if (fdatasync(fd) != 0)
		note_error(s, -errno);
}

/* Stop writing the current segment. */
static void rotate(struct spool *s)
{
	if (!s->has_cur)
		return;
	size_t i = s->nsegs - 1;
	int fd = s->wfd;
	s->wfd = -1;
	s->has_cur = false;
	if (seg_done(&s->segs[i])) {
		close(fd);
		remove_seg(s, i);
	} else if (s->fsync_mode == FSYNC_INTERVAL && s->cur_dirty) {
		if (s->npending == MAX_PENDING) {
			sync_fd_now(s, s->pending[0]);
			close(s->pending[0]);
			memmove(&s->pending[0], &s->pending[1], (MAX_PENDING - 1) * sizeof(int));
			s->npending--;
		}
		s->pending[s->npending++] = fd;
	} else {
		close(fd);
	}
	s->cur_dirty = false;
	s->cur_broken = false;
}

static int new_segment(struct spool *s)
{
	int r = segs_reserve(s);
	if (r)
		return r;
	for (int tries = 0; tries < 16; tries++) {
		char name[SEG_NAME_LEN + 1];
		uint64_t seq = s->next_seq++;
		seg_name(name, seq);
		int fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		s->segs[s->nsegs++] = (struct seg){.seq = seq};
		s->has_cur = true;
		s->wfd = fd;
		s->cur_dirty = false;
		s->cur_broken = false;
		s->dir_dirty = true;
		return 0;
	}
	return -EEXIST;
}

/* ---- recovery ---- */

struct scan {
	uint64_t cursor_off; /* UINT64_MAX: no cursor in this segment */
	uint64_t pre_entries, pre_records;
	bool cursor_ok;
	int64_t cursor_ns;
};

/* Check entries of fd from the start; returns the length of the whole ones. */
static int scan_entries(struct spool *s, int fd, uint64_t fsize, struct seg *g, struct scan *sc, unsigned char *buf,
			uint64_t *good)
{
	uint64_t off = 0;
	while (off < fsize) {
		struct ent_hdr h;
		if (off == sc->cursor_off)
			sc->cursor_ok = true;
		if (fsize - off < sizeof(h))
			break;
		int r = pread_all(fd, &h, sizeof(h), off);
		if (r == -EBADMSG)
			break;
		if (r)
			return r;
		if (h.magic != ENT_MAGIC || h.reserved || h.pad || h.len > fsize - off - sizeof(h))
			break;
		uint32_t crc = hdr_crc(&h);
		uint64_t pos = off + sizeof(h), end = pos + h.len;
		while (pos < end) {
			size_t n = end - pos < SCAN_CHUNK ? (size_t)(end - pos) : SCAN_CHUNK;
			r = pread_all(fd, buf, n, pos);
			if (r == -EBADMSG)
				break;
			if (r)
				return r;
			crc = (uint32_t)crc32_z(crc, buf, n);
			pos += n;
		}
		if (pos < end || crc != h.crc)
			break;
		if (g->entries == 0)
			g->first_ns = h.time_ns;
		if (off == sc->cursor_off)
			sc->cursor_ns = h.time_ns;
		if (off < sc->cursor_off) {
			sc->pre_entries++;
			sc->pre_records += h.nrecords;
		}
		g->entries++;
		g->records += h.nrecords;
		off = end;
	}
	if (off == fsize && off == sc->cursor_off)
		sc->cursor_ok = true;
	*good = off;
	return 0;
}

static int recover_segment(struct spool *s, uint64_t seq, unsigned char *buf)
{
	char name[SEG_NAME_LEN + 1];
	seg_name(name, seq);
	int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
		fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	uint64_t fsize = (uint64_t)sb.st_size, good = 0;
	struct seg g = {.seq = seq};
	struct scan sc = {.cursor_off = s->ack_valid && s->ack_seq == seq ? s->ack_off : UINT64_MAX};
	int r = scan_entries(s, fd, fsize, &g, &sc, buf, &good);
	if (r) {
		close(fd);
		return r;
	}
	if (good < fsize) {
		s->st.torn_entries++;
		s->st.torn_bytes += fsize - good;
		/* If the cut fails (read-only), only the whole entries are used. */
		if (ftruncate(fd, (off_t)good) == 0 && s->fsync_mode != FSYNC_NEVER)
			fdatasync(fd);
	}
	close(fd);
	g.size = good;
	if (sc.cursor_ok) {
		g.acked_entries = g.read_entries = sc.pre_entries;
		g.acked_records = g.read_records = sc.pre_records;
		g.read_off = sc.cursor_off;
		if (sc.cursor_off < good)
			g.first_ns = sc.cursor_ns;
	}
	if (g.entries == 0 || seg_done(&g)) {
		unlinkat(s->dirfd, name, 0);
		s->dir_dirty = true;
		return 0;
	}
	r = segs_reserve(s);
	if (r)
		return r;
	s->segs[s->nsegs++] = g;
	s->bytes += g.size;
	s->st.recovered_entries += g.entries - g.acked_entries;
	s->st.recovered_records += g.records - g.acked_records;
	s->st.recovered_bytes += g.size;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorted sequence numbers of the segment files in the directory. */
static int list_segments(struct spool *s, uint64_t **out, size_t *n)
{
	int fd = dup(s->dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = -errno;
		close(fd);
		return e;
	}
	rewinddir(d);
	uint64_t *v = NULL;
	size_t len = 0, cap = 0;
	int r = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		if (strlen(de->d_name) != SEG_NAME_LEN || !parse_seg_name(de->d_name, &seq))
			continue;
		if (len == cap) {
			size_t nc = cap ? cap * 2 : 64;
			uint64_t *p = realloc(v, nc * sizeof(*p));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			v = p;
			cap = nc;
		}
		v[len++] = seq;
	}
	if (!r && errno)
		r = -errno;
	closedir(d);
	if (r) {
		free(v);
		return r;
	}
	if (len)
		qsort(v, len, sizeof(*v), cmp_u64);
	*out = v;
	*n = len;
	return 0;
}

static void read_ack_cursor(struct spool *s)
{
	s->ackfd = openat(s->dirfd, ACK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int fd = s->ackfd >= 0 ? s->ackfd : openat(s->dirfd, ACK_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct ack_rec a;
	if (pread_all(fd, &a, sizeof(a), 0) == 0 && a.magic == ACK_MAGIC && a.version == 1 && a.crc == ack_crc(&a)) {
		s->ack_valid = true;
		s->ack_seq = a.seq;
		s->ack_off = a.off;
	}
	if (fd != s->ackfd)
		close(fd);
}

static int recover(struct spool *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0;
	read_ack_cursor(s);
	int r = list_segments(s, &seqs, &n);
	if (r)
		return r;
	unsigned char *buf = malloc(SCAN_CHUNK);
	if (!buf) {
		free(seqs);
		return -ENOMEM;
	}
	uint64_t max_seq = s->ack_valid ? s->ack_seq : 0;
	for (size_t i = 0; i < n && !r; i++) {
		if (seqs[i] > max_seq)
			max_seq = seqs[i];
		if (s->ack_valid && seqs[i] < s->ack_seq) {
			/* The cursor moved past it: every entry was acknowledged. */
			char name[SEG_NAME_LEN + 1];
			seg_name(name, seqs[i]);
			unlinkat(s->dirfd, name, 0);
			s->dir_dirty = true;
			continue;
		}
		r = recover_segment(s, seqs[i], buf);
	}
	free(buf);
	free(seqs);
	s->next_seq = max_seq + 1;
	return r;
}

/* mkdir -p, new directories 0700. */
static int make_dirs(const char *dir)
{
	size_t n = strlen(dir);
	if (n == 0 || n >= PATH_MAX)
		return -EINVAL;
	char path[PATH_MAX];
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char c = path[i];
		path[i] = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			int e = -errno;
			struct stat sb;
			if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
				return e;
		}
		path[i] = c;
	}
	return 0;
}

int spool_open(struct spool **sp, const char *dir, uint64_t max_bytes, size_t segment_bytes, int fsync_mode)
{
	if (!sp || !dir || !*dir || max_bytes <= SPOOL_ENTRY_HDR || segment_bytes == 0 ||
	    (fsync_mode != FSYNC_INTERVAL && fsync_mode != FSYNC_ALWAYS && fsync_mode != FSYNC_NEVER))
		return -EINVAL;
	int r = make_dirs(dir);
	if (r)
		return r;
	struct spool *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->wfd = s->rfd = s->ackfd = -1;
	s->max_bytes = max_bytes;
	s->segment_bytes = segment_bytes;
	s->fsync_mode = fsync_mode;
	s->next_id = 1;
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		r = -errno;
		free(s);
		return r;
	}
	if (flock(s->dirfd, LOCK_EX | LOCK_NB) != 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(s->dirfd);
		free(s);
		return r;
	}
	r = pthread_mutex_init(&s->mu, NULL);
	if (r) {
		close(s->dirfd);
		free(s);
		return -r;
	}
	r = recover(s);
	if (r) {
		s->fsync_mode = FSYNC_NEVER;
		spool_close(s);
		return r;
	}
	ack_update(s);
	*sp = s;
	return 0;
}

/* ---- append ---- */

/* Drop oldest segments until an entry of esz bytes fits; returns records lost. */
static uint64_t make_room(struct spool *s, uint64_t esz)
{
	uint64_t lost = 0;
	bool moved = false;
	while (s->nsegs > 0 && s->bytes + esz > s->max_bytes) {
		struct seg *g = &s->segs[0];
		uint64_t le = g->entries - g->acked_entries, lr = g->records - g->acked_records;
		if (le) {
			s->st.dropped_segments++;
			s->st.dropped_entries += le;
			s->st.dropped_records += lr;
			lost += lr;
		}
		if (s->has_cur && s->nsegs == 1) {
			close(s->wfd);
			s->wfd = -1;
			s->cur_dirty = false;
		}
		remove_seg(s, 0);
		moved = true;
	}
	if (moved)
		ack_update(s);
	return lost;
}

static int write_entry(struct spool *s, const void *blob, size_t len, uint32_t nrecords)
{
	struct seg *g = &s->segs[s->nsegs - 1];
	struct ent_hdr h = {.magic = ENT_MAGIC, .len = (uint32_t)len, .nrecords = nrecords, .time_ns = now_ns()};
	h.crc = (uint32_t)crc32_z(hdr_crc(&h), blob, len);
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)}, {.iov_base = (void *)blob, .iov_len = len}};
	int r = pwritev_all(s->wfd, iov, len ? 2 : 1, g->size);
	if (!r && s->fsync_mode == FSYNC_ALWAYS) {
		if (fdatasync(s->wfd) != 0)
			r = -errno;
		else if (s->dir_dirty && fsync(s->dirfd) != 0)
			r = -errno;
		else
			s->dir_dirty = false;
	}
	if (r) {
		/* Cut back to the last whole entry; if that fails, stop writing here. */
		if (ftruncate(s->wfd, (off_t)g->size) != 0)
			s->cur_broken = true;
		return r;
	}
	if (g->entries == 0)
		g->first_ns = h.time_ns;
	g->size += sizeof(h) + len;
	g->entries++;
	g->records += nrecords;
	s->bytes += sizeof(h) + len;
	if (s->fsync_mode != FSYNC_ALWAYS)
		s->cur_dirty = true;
	s->st.appended_entries++;
	s->st.appended_records += nrecords;
	return 0;
}

int spool_append(struct spool *s, const void *blob, size_t len, uint32_t nrecords)
{
	if (!s || (!blob && len))
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	uint64_t esz = (uint64_t)len + SPOOL_ENTRY_HDR;
	if (len > UINT32_MAX - SPOOL_ENTRY_HDR || esz > s->max_bytes) {
		s->st.refused_entries++;
		pthread_mutex_unlock(&s->mu);
		return -EMSGSIZE;
	}
	uint64_t lost = make_room(s, esz);
	if (s->has_cur) {
		const struct seg *g = &s->segs[s->nsegs - 1];
		if (s->cur_broken || (g->size > 0 && g->size + esz > s->segment_bytes))
			rotate(s);
	}
	int r = s->has_cur ? 0 : new_segment(s);
	if (!r)
		r = write_entry(s, blob, len, nrecords);
	if (r)
		note_error(s, r);
	pthread_mutex_unlock(&s->mu);
	if (r)
		return r;
	return lost > INT_MAX ? INT_MAX : (int)lost;
}

/* ---- replay ---- */

/* Read the entry of segment g at off into a new buffer. -EBADMSG: corrupt or gone. */
static int read_entry(struct spool *s, const struct seg *g, uint64_t off, struct ent_hdr *h, void **blob)
{
	if (s->rfd < 0 || s->rseq != g->seq) {
		char name[SEG_NAME_LEN + 1];
		close_rfd(s);
		seg_name(name, g->seq);
		s->rfd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (s->rfd < 0)
			return errno == ENOENT ? -EBADMSG : -errno;
		s->rseq = g->seq;
	}
	if (g->size - off < sizeof(*h))
		return -EBADMSG;
	int r = pread_all(s->rfd, h, sizeof(*h), off);
	if (r)
		return r;
	if (h->magic != ENT_MAGIC || h->reserved || h->pad || h->len > g->size - off - sizeof(*h))
		return -EBADMSG;
	void *p = malloc(h->len ? h->len : 1);
	if (!p)
		return -ENOMEM;
	r = pread_all(s->rfd, p, h->len, off + sizeof(*h));
	if (!r && (uint32_t)crc32_z(hdr_crc(h), p, h->len) != h->crc)
		r = -EBADMSG;
	if (r) {
		free(p);
		return r;
	}
	*blob = p;
	return 0;
}

static void fill_entry(struct spool_entry *e, uint64_t id, const struct ent_hdr *h, void *blob)
{
	e->id = id;
	e->blob = blob;
	e->len = h->len;
	e->nrecords = h->nrecords;
	e->time_ns = h->time_ns;
}

/* Everything from read_off on in g is lost: count it and treat it as acknowledged. */
static void skip_rest(struct spool *s, struct seg *g)
{
	uint64_t le = g->entries - g->read_entries, lr = g->records - g->read_records;
	s->st.corrupt_entries += le;
	s->st.dropped_records += lr;
	g->acked_entries += le;
	g->acked_records += lr;
	g->read_entries = g->entries;
	g->read_records = g->records;
	g->read_off = g->size;
	if (s->has_cur && g == &s->segs[s->nsegs - 1])
		s->cur_broken = true; /* append after the damage in a new segment */
}

static int peek_nacked(struct spool *s, struct spool_entry *e)
{
	for (;;) {
		struct item *best = NULL;
		for (size_t i = 0; i < s->nitems; i++) {
			struct item *it = &s->items[i];
			if (it->nacked &&
			    (!best || it->seq < best->seq || (it->seq == best->seq && it->off < best->off)))
				best = it;
		}
		if (!best)
			return -ENOENT;
		struct seg *g = find_seg(s, best->seq);
		struct ent_hdr h;
		void *blob = NULL;
		int r = read_entry(s, g, best->off, &h, &blob);
		if (r == 0) {
			best->nacked = false;
			fill_entry(e, best->id, &h, blob);
			return 0;
		}
		if (r != -EBADMSG)
			return r;
		s->st.corrupt_entries++;
		s->st.dropped_records += best->nrecords;
		g->acked_entries++;
		g->acked_records += best->nrecords;
		*best = s->items[--s->nitems];
		maybe_release(s, g);
		ack_update(s);
	}
}

static int peek_disk(struct spool *s, struct spool_entry *e)
{
	for (;;) {
		struct seg *g = NULL;
		for (size_t i = 0; i < s->nsegs && !g; i++)
			if (s->segs[i].read_off < s->segs[i].size)
				g = &s->segs[i];
		if (!g)
			return -ENOENT;
		if (s->nitems == s->itemcap) {
			size_t cap = s->itemcap ? s->itemcap * 2 : 16;
			struct item *p = realloc(s->items, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			s->items = p;
			s->itemcap = cap;
		}
		struct ent_hdr h;
		void *blob = NULL;
		int r = read_entry(s, g, g->read_off, &h, &blob);
		if (r == 0) {
			uint64_t id = s->next_id++;
			s->items[s->nitems++] =
				(struct item){.id = id, .seq = g->seq, .off = g->read_off, .nrecords = h.nrecords};
			g->read_off += sizeof(h) + h.len;
			g->read_entries++;
			g->read_records += h.nrecords;
			fill_entry(e, id, &h, blob);
			return 0;
		}
		if (r != -EBADMSG)
			return r;
		skip_rest(s, g);
		maybe_release(s, g);
		ack_update(s);
	}
}

int spool_peek_next(struct spool *s, struct spool_entry *e)
{
	if (!s || !e)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	int r = peek_nacked(s, e);
	if (r == -ENOENT)
		r = s->nitems >= SPOOL_MAX_INFLIGHT ? -EBUSY : peek_disk(s, e);
	pthread_mutex_unlock(&s->mu);
	return r;
}

static struct item *find_item(struct spool *s, uint64_t id)
{
	for (size_t i = 0; i < s->nitems; i++)
		if (s->items[i].id == id)
			return &s->items[i];
	return NULL;
}

int spool_ack(struct spool *s, uint64_t id)
{
	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	struct item *it = find_item(s, id);
	if (!it) {
		pthread_mutex_unlock(&s->mu);
		return -ENOENT;
	}
	struct seg *g = find_seg(s, it->seq);
	g->acked_entries++;
	g->acked_records += it->nrecords;
	s->st.acked_entries++;
	*it = s->items[--s->nitems];
	maybe_release(s, g);
	ack_update(s);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int spool_nack(struct spool *s, uint64_t id)
{
	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	struct item *it = find_item(s, id);
	if (it)
		it->nacked = true;
	pthread_mutex_unlock(&s->mu);
	return it ? 0 : -ENOENT;
}

/* ---- sync, stats, close ---- */

int spool_sync(struct spool *s)
{
	if (!s)
		return -EINVAL;
	int fds[MAX_PENDING + 3];
	bool is_dir[MAX_PENDING + 3] = {false};
	size_t n = 0;
	int err = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->npending; i++)
		fds[n++] = s->pending[i];
	s->npending = 0;
	if (s->has_cur && s->cur_dirty) {
		int fd = dup(s->wfd);
		if (fd >= 0) {
			fds[n++] = fd;
			s->cur_dirty = false;
		} else {
			err = -errno;
		}
	}
	if (s->dir_dirty) {
		int fd = dup(s->dirfd);
		if (fd >= 0) {
			is_dir[n] = true;
			fds[n++] = fd;
			s->dir_dirty = false;
		} else {
			err = -errno;
		}
	}
	if (s->ack_dirty && s->ackfd >= 0) {
		int fd = dup(s->ackfd);
		if (fd >= 0) {
			fds[n++] = fd;
			s->ack_dirty = false;
		} else {
			err = -errno;
		}
	}
	pthread_mutex_unlock(&s->mu);

	for (size_t i = 0; i < n; i++) {
		if ((is_dir[i] ? fsync(fds[i]) : fdatasync(fds[i])) != 0 && !err)
			err = -errno;
		close(fds[i]);
	}
	if (err) {
		pthread_mutex_lock(&s->mu);
		note_error(s, err);
		pthread_mutex_unlock(&s->mu);
	}
	return err;
}

void spool_stats(struct spool *s, struct spool_stats *st)
{
	if (!s || !st)
		return;
	pthread_mutex_lock(&s->mu);
	*st = s->st;
	st->bytes = s->bytes;
	st->segments = s->nsegs;
	st->entries = st->records = 0;
	st->oldest_ns = 0;
	for (size_t i = 0; i < s->nsegs; i++) {
		const struct seg *g = &s->segs[i];
		st->entries += g->entries - g->acked_entries;
		st->records += g->records - g->acked_records;
		if (!st->oldest_ns && g->entries > g->acked_entries)
			st->oldest_ns = g->first_ns;
	}
	st->inflight = 0;
	for (size_t i = 0; i < s->nitems; i++)
		st->inflight += !s->items[i].nacked;
	pthread_mutex_unlock(&s->mu);
}

int spool_close(struct spool *s)
{
	if (!s)
		return 0;
	int r = s->fsync_mode == FSYNC_NEVER ? 0 : spool_sync(s);
	pthread_mutex_lock(&s->mu);
	if (s->has_cur) {
		size_t i = s->nsegs - 1;
		close(s->wfd);
		s->wfd = -1;
		if (seg_done(&s->segs[i]))
			remove_seg(s, i);
		s->has_cur = false;
	}
	for (size_t i = 0; i < s->npending; i++)
		close(s->pending[i]);
	close_rfd(s);
	if (s->ackfd >= 0)
		close(s->ackfd);
	close(s->dirfd);
	free(s->segs);
	free(s->items);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return r;
}

/* ---- dead letters ---- */

/* JSON-escape reason (at most SPOOL_DEAD_REASON_MAX bytes of it) into out; returns bytes written. */
static size_t escape_reason(char *out, const char *reason)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strnlen(reason, SPOOL_DEAD_REASON_MAX + 1);
	bool cut = n > SPOOL_DEAD_REASON_MAX;
	if (cut)
		n = SPOOL_DEAD_REASON_MAX;
	const unsigned char *p = (const unsigned char *)reason;
	size_t o = 0, i = 0;
	while (i < n) {
		unsigned c = p[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			o += 6;
			i++;
		} else {
			size_t l = map_utf8_len(p + i, n - i);
			if (l == 0) {
				memcpy(out + o, "\\ufffd", 6);
				o += 6;
				i++;
			} else {
				memcpy(out + o, p + i, l);
				o += l;
				i += l;
			}
		}
	}
	if (cut) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	return o;
}

static int write_dead(struct spool *s, const char *line, size_t n, const char *name)
{
	if (mkdirat(s->dirfd, DEAD_DIR, 0700) != 0 && errno != EEXIST)
		return -errno;
	int fd = openat(s->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct stat sb;
	int r = 0;
	if (fstat(fd, &sb) != 0) {
		r = -errno;
	} else if ((uint64_t)sb.st_size + n > s->max_bytes) {
		r = -EFBIG;
	} else {
		for (size_t done = 0; done < n && !r;) {
			ssize_t w = write(fd, line + done, n - done);
			if (w > 0)
				done += (size_t)w;
			else if (w == 0)
				r = -EIO;
			else if (errno != EINTR)
				r = -errno;
		}
		if (!r && s->fsync_mode == FSYNC_ALWAYS && fdatasync(fd) != 0)
			r = -errno;
		if (r && ftruncate(fd, sb.st_size) != 0) {
			/* nothing more to do: the line is cut, the next one starts after it */
		}
	}
	close(fd);
	return r;
}

int spool_dead_letter(struct spool *s, const char *json, size_t len, const char *reason)
{
	if (!s || !json || !len || !reason)
		return -EINVAL;
	if (len > s->max_bytes) {
		pthread_mutex_lock(&s->mu);
		note_error(s, -EFBIG);
		pthread_mutex_unlock(&s->mu);
		return -EFBIG;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char when[32], day[16], name[64];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	snprintf(name, sizeof(name), DEAD_DIR "/dead-%s.jsonl", day);

	size_t cap = 96 + 6 * (size_t)SPOOL_DEAD_REASON_MAX + len;
	char *line = malloc(cap);
	if (!line)
		return -ENOMEM;
	int o = snprintf(line, cap, "{\"time\":\"%s.%03ldZ\",\"reason\":\"", when, ts.tv_nsec / 1000000);
	size_t n = (size_t)o;
	n += escape_reason(line + n, reason);
	memcpy(line + n, "\",\"record\":", 11);
	n += 11;
	for (size_t i = 0; i < len; i++)
		line[n + i] = json[i] == '\n' || json[i] == '\r' ? ' ' : json[i];
	n += len;
	memcpy(line + n, "}\n", 2);
	n += 2;

	pthread_mutex_lock(&s->mu);
	int r = write_dead(s, line, n, name);
	if (r)
		note_error(s, r);
	else
		s->st.dead_letters++;
	pthread_mutex_unlock(&s->mu);
	free(line);
	return r;
}
