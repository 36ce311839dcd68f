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
#include <zlib.h>

#include "agentd.h"

int encode_gzip(struct buf *out, const void *in, size_t len, int level)
{
	z_stream z = {0};
	if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t bound = deflateBound(&z, (uLong)len) + 32;
	out->len = 0;
	if (buf_reserve(out, bound)) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data;
	z.avail_out = (uInt)(out->cap);
	int rc = deflate(&z, Z_FINISH);
	out->len = z.total_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -EIO;
}

int encode_batch(struct batch *b, const struct encode_opts *o)
{
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
