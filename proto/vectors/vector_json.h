/*
 * vector_json: the JSON form of a decoded record, as the .json files of
 * proto/vectors hold it (PROTOCOL.md, "Test vectors"): 64-bit integers
 * beyond 2^53-1 (time_ns too) as decimal strings, strings that are not
 * strict UTF-8 as {"hex": ...}, nan/inf/-inf as strings. Shared by the
 * generator (gen_vectors) and the codec's unit tests (test_proto). Test
 * support only: not compiled into libagent or agentd.
 */
#ifndef AGENT_VECTOR_JSON_H
#define AGENT_VECTOR_JSON_H

#include "agent_proto.h"

#include <jansson.h>

/* The largest integer a JSON number carries exactly (2^53 - 1). */
#define VECTOR_SAFE_INT_MAX 9007199254740991LL

/* The record as JSON, or NULL when out of memory. */
json_t *vector_record_json(const ap_record_t *rec);

/* Is s (n bytes) strict UTF-8 (RFC 3629: no overlongs, no surrogates,
   nothing past U+10FFFF)? The Python and Node decoders agree on it. */
int vector_utf8_valid(const uint8_t *s, size_t n);

#endif
