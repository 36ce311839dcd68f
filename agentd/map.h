/*
 * map: turns one decoded record into one JSON object that the upstream's
 * POST /logs accepts (../UPSTREAM.md), as DESIGN.md's mapping rules say.
 *
 * Owns: nothing (a pure function over its arguments). Limits: the output
 * buffer's cap. Failure: -ENOMEM when the buffer's cap is reached, with the
 * buffer restored to its length before the call. Whatever the input, the
 * output is valid JSON whose every column value the server accepts.
 */
#ifndef AGENTD_MAP_H
#define AGENTD_MAP_H

#include <stdint.h>
#include <sys/types.h>

#include "agent_proto.h"
#include "buf.h"

/* Who sent the record, as the kernel says. */
struct origin {
	int32_t pid;
	uint32_t uid;
	uint32_t gid;
	char comm[16]; /* process name, NUL-terminated, "" when unknown */
};

/* What the mapping changed, counted per record or per value. */
struct map_counts {
	uint64_t moved; /* values that did not fit their column, kept in metadata */
	uint64_t invalid_utf8; /* strings with invalid UTF-8 or NUL, replaced by U+FFFD */
	uint64_t level_normalized; /* level fields given as an alias or number */
	uint64_t coerced; /* numbers turned into strings for a string column */
	uint64_t truncated; /* records the shim flagged as truncated */
	uint64_t origin_renamed; /* client keys that collided with a trusted origin key */
	uint64_t duplicate_keys; /* metadata keys given twice, the later ones stored as KEY#2, KEY#3, ... */
};

/*
 * Append the JSON object for rec to out: "level", "message", "created_at"
 * (omitted when time_ns is 0), the columns that got a valid value, then
 * "metadata" (always). o and host are the trusted origin, written into
 * metadata as "pid", "uid", "gid", "process" (omitted when comm is empty) and
 * "host" (host_len bytes); a NULL o or host leaves those keys out. Client
 * keys equal to an origin key (or "truncated") are stored as client_<key>.
 * The changes made are added to *c (may be NULL), only on success.
 * Thread-safe. Returns 0 or -ENOMEM (out->len restored).
 */
int map_record(struct buf *out, const ap_record_t *rec, const struct origin *o, const char *host, size_t host_len,
	       struct map_counts *c);

/*
 * The string helpers every JSON writer in agentd uses. map_json_escape()
 * appends s (n bytes) as the body of a JSON string, without quotes: invalid
 * UTF-8 (each maximal invalid subpart) and NUL become U+FFFD, control
 * characters are escaped; *fixed is set when anything was replaced. 0 or
 * -ENOMEM (the buffer may hold part of the string then: callers restore its
 * length). map_utf8_len() is the length of the well-formed UTF-8 character at
 * s (n bytes left), 0 when it is not one.
 */
int map_json_escape(struct buf *b, const char *s, size_t n, int *fixed);
size_t map_utf8_len(const unsigned char *s, size_t n);

#endif
