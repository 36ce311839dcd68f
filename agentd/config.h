/*
 * config: agentd's settings, parsed from an INI file (conf/agentd.conf).
 *
 * Owns: one struct config and the strings in it. Limits: every numeric key
 * has a range, checked at load. Failure: config_load() stops at the first
 * unknown section or key, or bad value, and describes it as
 *   FILE:LINE: key: bad value "x" (expected ...)
 * leaving *out untouched, so a reload keeps the last good configuration.
 */
#ifndef AGENTD_CONFIG_H
#define AGENTD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum compress_mode { COMPRESS_NONE = 0, COMPRESS_GZIP = 1 };
enum fsync_mode { FSYNC_INTERVAL = 0, FSYNC_ALWAYS = 1, FSYNC_NEVER = 2 };
enum spool_mode { SPOOL_ON_FAILURE = 0, SPOOL_ALWAYS = 1 };

struct config {
	char *path; /* file it came from, NULL for defaults only */
	struct {
		int log_level; /* 0 debug, 1 info, 2 warn, 3 error */
		unsigned shutdown_timeout_ms;
		char *hostname; /* empty: gethostname() */
	} agentd;
	struct {
		char *socket;
		unsigned socket_mode;
		char *stream_socket; /* empty: no stream socket */
		unsigned stream_socket_mode;
		size_t max_record_bytes;
		size_t receive_buffer_bytes;
		unsigned max_stream_clients;
	} ingest;
	struct {
		char *url; /* the full endpoint, ".../logs" */
		unsigned timeout_ms;
		unsigned connect_timeout_ms;
		unsigned max_inflight;
		char *token_file; /* empty: no Authorization header */
		char *ca_file; /* empty: the system's CAs */
		bool tls_verify;
	} upstream;
	struct {
		unsigned max_records;
		size_t max_bytes;
		unsigned interval_ms;
		int compress; /* enum compress_mode */
		unsigned compress_min_records;
		int gzip_level;
	} batch;
	struct {
		unsigned max_retries;
		unsigned initial_backoff_ms;
		unsigned max_backoff_ms;
	} retry;
	struct {
		size_t max_records;
		size_t max_bytes;
	} queue;
	struct {
		char *dir; /* empty: no spool */
		uint64_t max_bytes;
		int fsync; /* enum fsync_mode */
		unsigned fsync_interval_ms;
		int mode; /* enum spool_mode */
		size_t segment_bytes;
	} spool;
	struct {
		char *socket; /* empty: no control socket */
		unsigned socket_mode;
		unsigned max_clients;
	} control;
};

/* Fill c with the defaults (documented in conf/agentd.conf). 0 or -ENOMEM. */
int config_defaults(struct config *c);

/*
 * Load path over the defaults into *out. On success returns 0 and *out owns
 * the result (free it with config_free). On error returns -EINVAL (bad file,
 * message in err), -errno (cannot read the file) or -ENOMEM, and *out is not
 * touched.
 */
int config_load(struct config *out, const char *path, char *err, size_t errlen);

/* Parse INI text (for tests and the fuzzer); name is used in messages. */
int config_parse_string(struct config *out, const char *text, const char *name, char *err, size_t errlen);

void config_free(struct config *c);

#endif
