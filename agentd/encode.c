/*
 * encode: a sealed batch's records into the request body, in a worker
 * thread, so that the loop never waits on JSON or zlib.
 *
 * Owns: the batch's body while it runs. Limits: the JSON body is capped at
 * opts->max_body; past it encode_batch() fails with -EMSGSIZE and the caller
 * splits the batch. Failure: -ENOMEM / -EIO from zlib; a record that no
 * longer decodes (it was checked at ingest, so only a corrupt spool entry can)
 * is skipped and counted in b->skipped.
 */
#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agentd.h"

/*
 * Compressors are kept between batches (each holds a few hundred KB of
 * state): a small free list, one per worker at most, freed by
 * encode_cleanup(). libdeflate compresses a whole buffer at once, about
 * twice as fast as zlib at the same level, which is all a batch needs.
 */
#define POOL_MAX 8

static struct {
	pthread_mutex_t lock;
	struct libdeflate_compressor *c[POOL_MAX];
	int level[POOL_MAX];
	unsigned n;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct libdeflate_compressor *take_compressor(int level)
{
	struct libdeflate_compressor *c = NULL;
	pthread_mutex_lock(&pool.lock);
	for (unsigned i = 0; i < pool.n; i++)
		if (pool.level[i] == level) {
			c = pool.c[i];
			pool.c[i] = pool.c[pool.n - 1];
			pool.level[i] = pool.level[pool.n - 1];
			pool.n--;
			break;
		}
	pthread_mutex_unlock(&pool.lock);
	return c ? c : libdeflate_alloc_compressor(level);
}

static void give_compressor(struct libdeflate_compressor *c, int level)
{
	pthread_mutex_lock(&pool.lock);
	if (pool.n < POOL_MAX) {
		pool.c[pool.n] = c;
		pool.level[pool.n++] = level;
		c = NULL;
	}
	pthread_mutex_unlock(&pool.lock);
	if (c)
		libdeflate_free_compressor(c);
}

void encode_cleanup(void)
{
	pthread_mutex_lock(&pool.lock);
	while (pool.n)
		libdeflate_free_compressor(pool.c[--pool.n]);
	pthread_mutex_unlock(&pool.lock);
}

int encode_gzip(struct buf *out, const void *in, size_t len, int level)
{
	if (level < 1 || level > 9)
		return -EINVAL;
	struct libdeflate_compressor *c = take_compressor(level);
	if (!c)
		return -ENOMEM;
	size_t bound = libdeflate_gzip_compress_bound(c, len);
	out->len = 0;
	if (buf_reserve(out, bound)) {
		give_compressor(c, level);
		return -ENOMEM;
	}
	size_t n = libdeflate_gzip_compress(c, in, len, out->data, out->cap);
	give_compressor(c, level);
	if (n == 0)
		return -EIO;
	out->len = n;
	return 0;
}

/* Workers yield to the loop thread, which reads the sockets: a busy machine
 * delays encoding, not ingest. Once per worker thread. */
static void lower_priority_once(void)
{
	static _Thread_local bool done;
	if (done)
		return;
	done = true;
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
}

int encode_batch(struct batch *b, const struct encode_opts *o)
{
	lower_priority_once();
	struct buf json;
	buf_init(&json, o->max_body);
	size_t first = b->est_json + 64;
	(void)buf_reserve(&json, first < o->max_body ? first : o->max_body); /* a hint: growth is capped anyway */
	buf_puts(&json, "{\"logs\":[");
	size_t off = 0;
	uint32_t n = 0;
	int rc = 0;
	while (off + sizeof(struct rec_hdr) <= b->raw.len) {
		const struct rec_hdr *h = (const struct rec_hdr *)(b->raw.data + off);
		ap_record_t r;
		if (off + rec_size(h->len) > b->raw.len)
			break;
		off += rec_size(h->len);
		if (ap_decode(rec_frame(h), h->len, 0, &r) != AP_OK)
			continue;
		if (n && (rc = buf_putc(&json, ',')))
			break;
		if ((rc = map_record(&json, &r, &h->origin, o->host, o->host_len, &b->mc)))
			break;
		n++;
	}
	if (!rc)
		rc = buf_puts(&json, "]}");
	if (rc) {
		buf_free(&json);
		return -EMSGSIZE;
	}
	/* what did not make it into the body: corrupt or cut records */
	b->skipped = b->nrec > n ? b->nrec - n : 0;
	b->json_len = json.len;
	buf_free(&b->body);
	if (o->compress_min_records && n >= o->compress_min_records) {
		buf_init(&b->body, json.len + json.len / 8 + 1024);
		rc = encode_gzip(&b->body, json.data, json.len, o->gzip_level);
		buf_free(&json);
		if (rc) {
			buf_free(&b->body);
			return rc;
		}
		b->gzipped = true;
	} else {
		b->body = json;
		b->gzipped = false;
	}
	return 0;
}
