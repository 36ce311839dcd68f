/*
 * test_config: config_defaults, config_parse_string, config_load.
 *
 * Run from the repository root (conf/agentd.conf is found by that path).
 */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_proto.h"
#include "config.h"

#define CONF_FILE "conf/agentd.conf"
#define ERRLEN 512

static int parse(struct config *c, const char *text, char *err)
{
	return config_parse_string(c, text, "t.conf", err, ERRLEN);
}

static void expect_err(const char *text, const char *msg)
{
	struct config c, before;
	char err[ERRLEN] = "";
	int r;

	memset(&c, 0x5a, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	r = parse(&c, text, err);
	ck_assert_msg(r == -EINVAL, "parse of <%s> returned %d, not -EINVAL", text, r);
	ck_assert_str_eq(err, msg);
	ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "output written on error");
}

static void expect_ok(struct config *c, const char *text)
{
	char err[ERRLEN] = "";
	int r = parse(c, text, err);

	ck_assert_msg(r == 0, "parse of <%s> failed: %d %s", text, r, err);
}

static void assert_defaults(const struct config *c)
{
	ck_assert_int_eq(c->agentd.log_level, 1);
	ck_assert_uint_eq(c->agentd.shutdown_timeout_ms, 10000);
	ck_assert_str_eq(c->agentd.hostname, "");
	ck_assert_str_eq(c->ingest.socket, "/run/agentd/agentd.sock");
	ck_assert_uint_eq(c->ingest.socket_mode, 0666);
	ck_assert_str_eq(c->ingest.stream_socket, "/run/agentd/agentd.stream");
	ck_assert_uint_eq(c->ingest.stream_socket_mode, 0666);
	ck_assert_uint_eq(c->ingest.max_record_bytes, 131072);
	ck_assert_uint_eq(c->ingest.max_record_bytes, AP_MAX_FRAME);
	ck_assert_uint_eq(c->ingest.receive_buffer_bytes, 8u << 20);
	ck_assert_uint_eq(c->ingest.max_stream_clients, 256);
	ck_assert_str_eq(c->upstream.url, "http://127.0.0.1:8000/logs");
	ck_assert_uint_eq(c->upstream.timeout_ms, 10000);
	ck_assert_uint_eq(c->upstream.connect_timeout_ms, 3000);
	ck_assert_uint_eq(c->upstream.max_inflight, 4);
	ck_assert_str_eq(c->upstream.token_file, "");
	ck_assert_str_eq(c->upstream.ca_file, "");
	ck_assert(c->upstream.tls_verify);
	ck_assert_uint_eq(c->batch.max_records, 1000);
	ck_assert_uint_eq(c->batch.max_bytes, 4u << 20);
	ck_assert_uint_eq(c->batch.interval_ms, 1000);
	ck_assert_int_eq(c->batch.compress, COMPRESS_GZIP);
	ck_assert_uint_eq(c->batch.compress_min_records, 100);
	ck_assert_int_eq(c->batch.gzip_level, 1);
	ck_assert_uint_eq(c->retry.max_retries, 3);
	ck_assert_uint_eq(c->retry.initial_backoff_ms, 1000);
	ck_assert_uint_eq(c->retry.max_backoff_ms, 30000);
	ck_assert_uint_eq(c->queue.max_records, 100000);
	ck_assert_uint_eq(c->queue.max_bytes, 32u << 20);
	ck_assert_str_eq(c->spool.dir, "/var/lib/agentd/spool");
	ck_assert_uint_eq(c->spool.max_bytes, 1u << 30);
	ck_assert_int_eq(c->spool.fsync, FSYNC_INTERVAL);
	ck_assert_uint_eq(c->spool.fsync_interval_ms, 1000);
	ck_assert_int_eq(c->spool.mode, SPOOL_ON_FAILURE);
	ck_assert_uint_eq(c->spool.segment_bytes, 8u << 20);
	ck_assert_str_eq(c->control.socket, "/run/agentd/control.sock");
	ck_assert_uint_eq(c->control.socket_mode, 0660);
	ck_assert_uint_eq(c->control.max_clients, 16);
}

/* Read a numeric field of any width at off. */
static uint64_t get_num(const struct config *c, size_t off, size_t size)
{
	const char *f = (const char *)c + off;
	uint64_t v64;
	uint32_t v32;
	uint8_t v8;

	if (size == 8) {
		memcpy(&v64, f, 8);
		return v64;
	}
	if (size == 4) {
		memcpy(&v32, f, 4);
		return v32;
	}
	memcpy(&v8, f, 1);
	return v8;
}

#define F(m) offsetof(struct config, m), sizeof(((struct config *)0)->m)

/* ---- defaults and the shipped file ------------------------------------- */

START_TEST(defaults_are_documented_values)
{
	struct config c;

	ck_assert_int_eq(config_defaults(&c), 0);
	assert_defaults(&c);
	ck_assert_ptr_null(c.path);
	config_free(&c);
}
END_TEST

START_TEST(empty_text_gives_defaults)
{
	struct config c;

	expect_ok(&c, "");
	assert_defaults(&c);
	ck_assert_str_eq(c.path, "t.conf");
	config_free(&c);
	expect_ok(&c, "; only a comment\n\n# another\n[agentd]\n");
	assert_defaults(&c);
	config_free(&c);
}
END_TEST

START_TEST(shipped_conf_parses_to_defaults)
{
	struct config c;
	char err[ERRLEN] = "";
	int r = config_load(&c, CONF_FILE, err, sizeof(err));

	ck_assert_msg(r == 0, "%s", err);
	assert_defaults(&c);
	ck_assert_str_eq(c.path, CONF_FILE);
	config_free(&c);
}
END_TEST

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static const struct {
	const char *section, *key;
} all_keys[] = {
	{"agentd", "log_level"},
	{"agentd", "shutdown_timeout_ms"},
	{"agentd", "hostname"},
	{"ingest", "socket"},
	{"ingest", "socket_mode"},
	{"ingest", "stream_socket"},
	{"ingest", "stream_socket_mode"},
	{"ingest", "max_record_bytes"},
	{"ingest", "receive_buffer_bytes"},
	{"ingest", "max_stream_clients"},
	{"upstream", "url"},
	{"upstream", "timeout_ms"},
	{"upstream", "connect_timeout_ms"},
	{"upstream", "max_inflight"},
	{"upstream", "token_file"},
	{"upstream", "ca_file"},
	{"upstream", "tls_verify"},
	{"batch", "max_records"},
	{"batch", "max_bytes"},
	{"batch", "interval_ms"},
	{"batch", "compress"},
	{"batch", "compress_min_records"},
	{"batch", "gzip_level"},
	{"retry", "max_retries"},
	{"retry", "initial_backoff_ms"},
	{"retry", "max_backoff_ms"},
	{"queue", "max_records"},
	{"queue", "max_bytes"},
	{"spool", "dir"},
	{"spool", "max_bytes"},
	{"spool", "fsync"},
	{"spool", "fsync_interval_ms"},
	{"spool", "mode"},
	{"spool", "segment_bytes"},
	{"control", "socket"},
	{"control", "socket_mode"},
	{"control", "max_clients"},
};
#define N_ALL (sizeof(all_keys) / sizeof(all_keys[0]))

/*
 * Every key appears in the shipped file as "#key = default" in its section,
 * below a comment that names its default; uncommenting them all still gives
 * the defaults.
 */
START_TEST(shipped_conf_documents_every_key)
{
	char *text = read_file(CONF_FILE), *line, *next, *out;
	char section[32] = "", err[ERRLEN] = "", prev[256] = "";
	bool seen[N_ALL] = {false};
	size_t o = 0, i;
	struct config c;

	out = calloc(1, strlen(text) + 1);
	ck_assert_ptr_nonnull(out);
	for (line = text; *line; line = next) {
		size_t klen;
		next = strchr(line, '\n');
		next = next ? next : line + strlen(line);
		if (*next)
			*next++ = '\0';
		klen = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_");
		if (line[0] == '[') {
			ck_assert(sscanf(line, "[%31[a-z]]", section) == 1);
		} else if (line[0] == '#' && klen > 0 && strncmp(line + 1 + klen, " =", 2) == 0) {
			for (i = 0; i < N_ALL; i++) {
				if (strcmp(all_keys[i].section, section) == 0 && strlen(all_keys[i].key) == klen &&
				    strncmp(all_keys[i].key, line + 1, klen) == 0)
					seen[i] = true;
			}
			ck_assert_msg(strstr(prev, "Default:"), "no \"Default:\" above <%s>", line);
			line++; /* uncomment */
		}
		if (line[0] == '#')
			snprintf(prev, sizeof(prev), "%s", line);
		o += (size_t)snprintf(out + o, strlen(line) + 2, "%s\n", line);
	}
	for (i = 0; i < N_ALL; i++)
		ck_assert_msg(seen[i], "[%s] %s missing from %s", all_keys[i].section, all_keys[i].key, CONF_FILE);
	ck_assert_msg(parse(&c, out, err) == 0, "%s", err);
	assert_defaults(&c);
	config_free(&c);
	free(out);
	free(text);
}
END_TEST

/* ---- every key, one valid value ---------------------------------------- */

static const struct {
	const char *text;
	size_t off, size; /* size 0: string */
	uint64_t num;
	const char *str;
} valid[] = {
	{"[agentd]\nlog_level = debug\n", F(agentd.log_level), 0, NULL},
	{"[agentd]\nlog_level = warn\n", F(agentd.log_level), 2, NULL},
	{"[agentd]\nlog_level = ERROR\n", F(agentd.log_level), 3, NULL},
	{"[agentd]\nshutdown_timeout_ms = 5000\n", F(agentd.shutdown_timeout_ms), 5000, NULL},
	{"[agentd]\nhostname = web-01.example_org\n", offsetof(struct config, agentd.hostname), 0, 0,
	 "web-01.example_org"},
	{"[ingest]\nsocket = /tmp/a.sock\n", offsetof(struct config, ingest.socket), 0, 0, "/tmp/a.sock"},
	{"[ingest]\nsocket_mode = 0600\n", F(ingest.socket_mode), 0600, NULL},
	{"[ingest]\nstream_socket = \"\"\n", offsetof(struct config, ingest.stream_socket), 0, 0, ""},
	{"[ingest]\nstream_socket_mode = 0644\n", F(ingest.stream_socket_mode), 0644, NULL},
	{"[ingest]\nmax_record_bytes = 64K\n", F(ingest.max_record_bytes), 65536, NULL},
	{"[ingest]\nreceive_buffer_bytes = 16M\n", F(ingest.receive_buffer_bytes), 16u << 20, NULL},
	{"[ingest]\nmax_stream_clients = 10\n", F(ingest.max_stream_clients), 10, NULL},
	{"[upstream]\nurl = https://logs.example.com:8443/v1/logs?x=1\n", offsetof(struct config, upstream.url), 0, 0,
	 "https://logs.example.com:8443/v1/logs?x=1"},
	{"[upstream]\ntimeout_ms = 20000\n", F(upstream.timeout_ms), 20000, NULL},
	{"[upstream]\nconnect_timeout_ms = 500\n", F(upstream.connect_timeout_ms), 500, NULL},
	{"[upstream]\nmax_inflight = 8\n", F(upstream.max_inflight), 8, NULL},
	{"[upstream]\ntoken_file = /etc/agentd/token\n", offsetof(struct config, upstream.token_file), 0, 0,
	 "/etc/agentd/token"},
	{"[upstream]\nca_file = \"/etc/ssl/my ca.pem\"\n", offsetof(struct config, upstream.ca_file), 0, 0,
	 "/etc/ssl/my ca.pem"},
	{"[upstream]\ntls_verify = false\n", F(upstream.tls_verify), 0, NULL},
	{"[batch]\nmax_records = 500\n", F(batch.max_records), 500, NULL},
	{"[batch]\nmax_bytes = 1M\n", F(batch.max_bytes), 1u << 20, NULL},
	{"[batch]\ninterval_ms = 250\n", F(batch.interval_ms), 250, NULL},
	{"[batch]\ncompress = none\n", F(batch.compress), COMPRESS_NONE, NULL},
	{"[batch]\ncompress = GZIP\n", F(batch.compress), COMPRESS_GZIP, NULL},
	{"[batch]\ncompress_min_records = 0\n", F(batch.compress_min_records), 0, NULL},
	{"[batch]\ngzip_level = 9\n", F(batch.gzip_level), 9, NULL},
	{"[retry]\nmax_retries = 0\n", F(retry.max_retries), 0, NULL},
	{"[retry]\ninitial_backoff_ms = 500\n", F(retry.initial_backoff_ms), 500, NULL},
	{"[retry]\nmax_backoff_ms = 60000\n", F(retry.max_backoff_ms), 60000, NULL},
	{"[queue]\nmax_records = 5000\n", F(queue.max_records), 5000, NULL},
	{"[queue]\nmax_bytes = 64MiB\n", F(queue.max_bytes), 64u << 20, NULL},
	{"[spool]\ndir =\n", offsetof(struct config, spool.dir), 0, 0, ""},
	{"[spool]\ndir = /srv/spool\n", offsetof(struct config, spool.dir), 0, 0, "/srv/spool"},
	{"[spool]\nmax_bytes = 20G\n", F(spool.max_bytes), 20ull << 30, NULL},
	{"[spool]\nfsync = always\n", F(spool.fsync), FSYNC_ALWAYS, NULL},
	{"[spool]\nfsync = never\n", F(spool.fsync), FSYNC_NEVER, NULL},
	{"[spool]\nfsync_interval_ms = 200\n", F(spool.fsync_interval_ms), 200, NULL},
	{"[spool]\nmode = always\n", F(spool.mode), SPOOL_ALWAYS, NULL},
	{"[spool]\nsegment_bytes = 16M\n", F(spool.segment_bytes), 16u << 20, NULL},
	{"[control]\nsocket = \"\"\n", offsetof(struct config, control.socket), 0, 0, ""},
	{"[control]\nsocket_mode = 0600\n", F(control.socket_mode), 0600, NULL},
	{"[control]\nmax_clients = 4\n", F(control.max_clients), 4, NULL},
};

START_TEST(each_key_takes_a_valid_value)
{
	struct config c;

	expect_ok(&c, valid[_i].text);
	if (valid[_i].size) {
		ck_assert_msg(get_num(&c, valid[_i].off, valid[_i].size) == valid[_i].num, "%s", valid[_i].text);
	} else {
		const char *s;
		memcpy(&s, (const char *)&c + valid[_i].off, sizeof(s));
		ck_assert_str_eq(s, valid[_i].str);
	}
	config_free(&c);
}
END_TEST

/* ---- ranges: limit-1, limit, limit+1 ----------------------------------- */

static const struct {
	const char *section, *key;
	uint64_t min, max;
	size_t off, size;
	const char *pre; /* keeps the cross-key checks happy at both limits */
	const char *want;
} ranges[] = {
	{"agentd", "shutdown_timeout_ms", 0, 600000, F(agentd.shutdown_timeout_ms), "", "an integer 0..600000"},
	{"ingest", "max_record_bytes", 1024, 131072, F(ingest.max_record_bytes), "",
	 "a size 1K..128K with an optional K, M or G suffix"},
	{"ingest", "receive_buffer_bytes", 4096, 1ull << 30, F(ingest.receive_buffer_bytes),
	 "[ingest]\nmax_record_bytes = 1K\n[batch]\nmax_bytes = 1K\n",
	 "a size 4K..1G with an optional K, M or G suffix"},
	{"ingest", "max_stream_clients", 1, 65536, F(ingest.max_stream_clients), "", "an integer 1..65536"},
	{"upstream", "timeout_ms", 100, 3600000, F(upstream.timeout_ms), "[upstream]\nconnect_timeout_ms = 100\n",
	 "an integer 100..3600000"},
	{"upstream", "connect_timeout_ms", 100, 3600000, F(upstream.connect_timeout_ms),
	 "[upstream]\ntimeout_ms = 3600000\n", "an integer 100..3600000"},
	{"upstream", "max_inflight", 1, 64, F(upstream.max_inflight), "", "an integer 1..64"},
	{"batch", "max_records", 1, 100000, F(batch.max_records), "", "an integer 1..100000"},
	{"batch", "max_bytes", 1024, 256ull << 20, F(batch.max_bytes),
	 "[ingest]\nmax_record_bytes = 1K\n[queue]\nmax_bytes = 256M\n[spool]\nsegment_bytes = 256M\n",
	 "a size 1K..256M with an optional K, M or G suffix"},
	{"batch", "interval_ms", 1, 3600000, F(batch.interval_ms), "", "an integer 1..3600000"},
	{"batch", "compress_min_records", 0, 100000, F(batch.compress_min_records), "", "an integer 0..100000"},
	{"batch", "gzip_level", 1, 9, F(batch.gzip_level), "", "an integer 1..9"},
	{"retry", "max_retries", 0, 100, F(retry.max_retries), "", "an integer 0..100"},
	{"retry", "initial_backoff_ms", 1, 3600000, F(retry.initial_backoff_ms), "[retry]\nmax_backoff_ms = 3600000\n",
	 "an integer 1..3600000"},
	{"retry", "max_backoff_ms", 1, 3600000, F(retry.max_backoff_ms), "[retry]\ninitial_backoff_ms = 1\n",
	 "an integer 1..3600000"},
	{"queue", "max_records", 1, 100000000, F(queue.max_records), "[batch]\nmax_records = 1\n",
	 "an integer 1..100000000"},
	{"queue", "max_bytes", 1024, 64ull << 30, F(queue.max_bytes),
	 "[ingest]\nmax_record_bytes = 1K\n[batch]\nmax_bytes = 1K\n",
	 "a size 1K..64G with an optional K, M or G suffix"},
	{"spool", "max_bytes", 65536, 16384ull << 30, F(spool.max_bytes),
	 "[ingest]\nmax_record_bytes = 1K\n[batch]\nmax_bytes = 64K\n[spool]\nsegment_bytes = 64K\n",
	 "a size 64K..16384G with an optional K, M or G suffix"},
	{"spool", "fsync_interval_ms", 1, 3600000, F(spool.fsync_interval_ms), "", "an integer 1..3600000"},
	{"spool", "segment_bytes", 65536, 1ull << 30, F(spool.segment_bytes),
	 "[ingest]\nmax_record_bytes = 1K\n[batch]\nmax_bytes = 64K\n",
	 "a size 64K..1G with an optional K, M or G suffix"},
	{"control", "max_clients", 1, 1024, F(control.max_clients), "", "an integer 1..1024"},
};

static void check_limit(size_t i, uint64_t v, bool ok)
{
	char text[512], val[32], msg[ERRLEN];
	unsigned line = 2;
	const char *q;
	struct config c;

	snprintf(val, sizeof(val), "%llu", (unsigned long long)v);
	snprintf(text, sizeof(text), "%s[%s]\n%s = %s\n", ranges[i].pre, ranges[i].section, ranges[i].key, val);
	for (q = ranges[i].pre; *q; q++)
		line += *q == '\n';
	if (ok) {
		expect_ok(&c, text);
		ck_assert_msg(get_num(&c, ranges[i].off, ranges[i].size) == v, "[%s] %s = %s", ranges[i].section,
			      ranges[i].key, val);
		config_free(&c);
	} else {
		snprintf(msg, sizeof(msg), "t.conf:%u: %s: bad value \"%s\" (expected %s)", line, ranges[i].key, val,
			 ranges[i].want);
		expect_err(text, msg);
	}
}

START_TEST(ranges_limit_minus_one_limit_plus_one)
{
	if (ranges[_i].max > SIZE_MAX && ranges[_i].size < 8)
		return;
	if (ranges[_i].min > 0)
		check_limit((size_t)_i, ranges[_i].min - 1, false);
	check_limit((size_t)_i, ranges[_i].min, true);
	check_limit((size_t)_i, ranges[_i].min + 1, true);
	check_limit((size_t)_i, ranges[_i].max - 1, true);
	check_limit((size_t)_i, ranges[_i].max, true);
	check_limit((size_t)_i, ranges[_i].max + 1, false);
}
END_TEST

START_TEST(max_record_bytes_limit_is_the_protocol_frame)
{
	struct config c;
	char text[128];

	snprintf(text, sizeof(text), "[ingest]\nmax_record_bytes = %d\n", AP_MAX_FRAME);
	expect_ok(&c, text);
	ck_assert_uint_eq(c.ingest.max_record_bytes, AP_MAX_FRAME);
	config_free(&c);
}
END_TEST

/* ---- value syntax ------------------------------------------------------ */

START_TEST(integers_are_strict_decimal)
{
	static const char *const bad[] = {"",
					  "+4",
					  "-4",
					  "0x10",
					  "4.0",
					  "4 4",
					  "4a",
					  "1e3",
					  "four",
					  "18446744073709551616",
					  "99999999999999999999999"};
	char text[128], msg[ERRLEN];
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[upstream]\nmax_inflight = %s\n", bad[i]);
		snprintf(msg, sizeof(msg), "t.conf:2: max_inflight: bad value \"%s\" (expected an integer 1..64)",
			 bad[i]);
		expect_err(text, msg);
	}
	expect_ok(&c, "[upstream]\nmax_inflight = 007\n");
	ck_assert_uint_eq(c.upstream.max_inflight, 7);
	config_free(&c);
}
END_TEST

START_TEST(sizes_take_k_m_g_suffixes)
{
	static const struct {
		const char *v;
		uint64_t want;
	} ok[] = {
		{"65536", 65536},
		{"64k", 65536},
		{"64K", 65536},
		{"64KiB", 65536},
		{"64kib", 65536},
		{"64 K", 65536},
		{"1M", 1u << 20},
		{"1mib", 1u << 20},
		{"3G", 3ull << 30},
		{"3GiB", 3ull << 30},
		{"16384G", 16384ull << 30},
		{"1048576K", 1ull << 30},
	};
	static const char *const bad[] = {"64KB", "64B", "1T",	   "K",	  "64 KiB B",
					  "1.5M", "-1M", "64KiBs", "M64", "17179869184G"};
	char text[128], msg[ERRLEN];
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text),
			 "[ingest]\nmax_record_bytes = 1K\n[batch]\nmax_bytes = 1K\n[spool]\nsegment_bytes = 64K\n"
			 "max_bytes = %s\n",
			 ok[i].v);
		expect_ok(&c, text);
		ck_assert_msg(c.spool.max_bytes == ok[i].want, "%s", ok[i].v);
		config_free(&c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[spool]\nmax_bytes = %s\n", bad[i]);
		snprintf(
			msg, sizeof(msg),
			"t.conf:2: max_bytes: bad value \"%s\" (expected a size 64K..16384G with an optional K, M or G "
			"suffix)",
			bad[i]);
		expect_err(text, msg);
	}
	/* overflow by the multiplication */
	expect_err(
		"[spool]\nmax_bytes = 18014398509481984K\n",
		"t.conf:2: max_bytes: bad value \"18014398509481984K\" (expected a size 64K..16384G with an optional "
		"K, M or G suffix)");
}
END_TEST

START_TEST(booleans_take_all_spellings)
{
	static const struct {
		const char *v;
		bool want;
	} ok[] = {{"true", true},   {"TRUE", true},   {"yes", true}, {"on", true},   {"1", true},
		  {"false", false}, {"False", false}, {"no", false}, {"off", false}, {"0", false}};
	static const char *const bad[] = {"", "2", "y", "n", "enabled", "truee", "01"};
	char text[128], msg[ERRLEN];
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "[upstream]\ntls_verify = %s\n", ok[i].v);
		expect_ok(&c, text);
		ck_assert_msg(c.upstream.tls_verify == ok[i].want, "%s", ok[i].v);
		config_free(&c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[upstream]\ntls_verify = %s\n", bad[i]);
		snprintf(msg, sizeof(msg),
			 "t.conf:2: tls_verify: bad value \"%s\" (expected true, false, yes, no, on, off, 1 or 0)",
			 bad[i]);
		expect_err(text, msg);
	}
}
END_TEST

START_TEST(modes_are_octal_up_to_0777)
{
	static const struct {
		const char *v;
		unsigned want;
	} ok[] = {{"0", 0}, {"0000", 0}, {"0001", 1}, {"0660", 0660}, {"660", 0660}, {"0776", 0776}, {"0777", 0777}};
	static const char *const bad[] = {"",  "01000", "1000",	 "0778",      "0888",
					  "9", "0x1ff", "-0660", "rw-rw----", "u=rw"};
	char text[128], msg[ERRLEN];
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "[control]\nsocket_mode = %s\n", ok[i].v);
		expect_ok(&c, text);
		ck_assert_msg(c.control.socket_mode == ok[i].want, "%s", ok[i].v);
		config_free(&c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[control]\nsocket_mode = %s\n", bad[i]);
		snprintf(msg, sizeof(msg),
			 "t.conf:2: socket_mode: bad value \"%s\" (expected an octal mode 0000..0777)", bad[i]);
		expect_err(text, msg);
	}
}
END_TEST

START_TEST(enums_name_their_choices)
{
	expect_err("[agentd]\nlog_level = verbose\n",
		   "t.conf:2: log_level: bad value \"verbose\" (expected debug, info, warn or error)");
	expect_err("[agentd]\nlog_level = warning\n",
		   "t.conf:2: log_level: bad value \"warning\" (expected debug, info, warn or error)");
	expect_err("[batch]\ncompress = zstd\n", "t.conf:2: compress: bad value \"zstd\" (expected none or gzip)");
	expect_err("[spool]\nfsync = sometimes\n",
		   "t.conf:2: fsync: bad value \"sometimes\" (expected interval, always or never)");
	expect_err("[spool]\nmode = on_failure\n",
		   "t.conf:2: mode: bad value \"on_failure\" (expected on-failure or always)");
}
END_TEST

START_TEST(strings_are_checked)
{
	static const char *const bad_url[] = {
		"", "ftp://h/logs", "127.0.0.1:8000/logs", "http://", "http:///logs", "http://h /logs", "\"\""};
	char text[128], msg[ERRLEN];
	struct config c;
	size_t i;

	for (i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
		snprintf(text, sizeof(text), "[upstream]\nurl = %s\n", bad_url[i]);
		snprintf(msg, sizeof(msg), "t.conf:2: url: bad value \"%s\" (expected an http:// or https:// URL)",
			 strcmp(bad_url[i], "\"\"") == 0 ? "\\\"\\\"" : bad_url[i]);
		expect_err(text, msg);
	}
	expect_ok(&c, "[upstream]\nurl = HTTP://h\n");
	ck_assert_str_eq(c.upstream.url, "HTTP://h");
	config_free(&c);

	expect_err("[ingest]\nsocket =\n", "t.conf:2: socket: bad value \"\" (expected a socket path of 1..107 bytes)");
	expect_err("[ingest]\nsocket = \"\"\n",
		   "t.conf:2: socket: bad value \"\\\"\\\"\" (expected a socket path of 1..107 bytes)");
	expect_err("[agentd]\nhostname = my host\n",
		   "t.conf:2: hostname: bad value \"my host\" (expected a host name of letters, digits, '-', '.' and "
		   "'_', at most 253 bytes, or \"\")");
	expect_err("[upstream]\ntoken_file = /etc/a\tb\n",
		   "t.conf:2: token_file: bad value \"/etc/a\\x09b\" (expected a path, or \"\" for none)");
}
END_TEST

START_TEST(socket_path_length_limit)
{
	char path[200], text[256], msg[ERRLEN];
	struct config c;

	memset(path, 'a', 107);
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof(text), "[control]\nsocket = %s\n", path);
	expect_ok(&c, text);
	ck_assert_uint_eq(strlen(c.control.socket), 107);
	config_free(&c);

	path[107] = 'a';
	path[108] = '\0';
	snprintf(text, sizeof(text), "[control]\nsocket = %s\n", path);
	snprintf(msg, sizeof(msg),
		 "t.conf:2: socket: bad value \"%.64s...\" (expected a socket path of at most 107 bytes, or \"\" for "
		 "none)",
		 path);
	expect_err(text, msg);
}
END_TEST

/* 253 bytes (the key's own limit) do not fit in a line; 180 do. */
START_TEST(long_hostname_is_taken)
{
	char name[200], text[256];
	struct config c;

	memset(name, 'h', 180);
	name[180] = '\0';
	snprintf(text, sizeof(text), "[agentd]\nhostname = %s\n", name);
	expect_ok(&c, text);
	ck_assert_str_eq(c.agentd.hostname, name);
	config_free(&c);
}
END_TEST

/* ---- message format ---------------------------------------------------- */

START_TEST(bad_value_names_file_line_and_key)
{
	expect_err("# c\n\n[batch]\n\n  max_records = 0 ; none\n",
		   "t.conf:5: max_records: bad value \"0\" (expected an integer 1..100000)");
}
END_TEST

START_TEST(values_in_messages_are_escaped_and_cut)
{
	char text[256], msg[ERRLEN], big[150];

	expect_err("[agentd]\nlog_level = \x1b[31mred\x7f\n",
		   "t.conf:2: log_level: bad value \"\\x1b[31mred\\x7f\" (expected debug, info, warn or error)");
	expect_err("[agentd]\nlog_level = a\"b\\c\xc3\xa9\n",
		   "t.conf:2: log_level: bad value \"a\\\"b\\\\c\\xc3\\xa9\" (expected debug, info, warn or error)");
	memset(big, 'x', 149);
	big[149] = '\0';
	snprintf(text, sizeof(text), "[agentd]\nlog_level = %s\n", big);
	snprintf(msg, sizeof(msg), "t.conf:2: log_level: bad value \"%.64s...\" (expected debug, info, warn or error)",
		 big);
	expect_err(text, msg);
	expect_err("[agentd]\n\x1b]0;x\x07 = 1\n", "t.conf:2: \\x1b]0;x\\x07: unknown key in [agentd]");
}
END_TEST

START_TEST(unknown_key_and_section)
{
	expect_err("[agentd]\nlog_level = info\nloglevel = info\n", "t.conf:3: loglevel: unknown key in [agentd]");
	expect_err("[batch]\nurl = http://h/\n", "t.conf:2: url: unknown key in [batch]");
	expect_err("log_level = info\n", "t.conf:1: log_level: unknown key in []");
	expect_err("[agentd]\n\n[uploader]\n", "t.conf:3: [uploader]: unknown section");
	expect_err("[agentd]\n[Agentd]\nx = 1\n", "t.conf:2: [Agentd]: unknown section");
	expect_err("[ agentd ]\n", "t.conf:1: [ agentd ]: unknown section");
	expect_err("[]\n", "t.conf:1: []: unknown section");
	expect_err("[\x1b[2J]\n", "t.conf:1: [\\x1b[2J]: unknown section");
}
END_TEST

START_TEST(syntax_errors)
{
	char text[512];

	expect_err("[agentd]\nlog_level\n", "t.conf:2: syntax error");
	expect_err("[agentd\nlog_level = info\n", "t.conf:1: syntax error");
	expect_err("[agentd]\n\n[batch ; c]\n", "t.conf:3: syntax error");
	expect_err("[agentd] x\n", "t.conf:1: syntax error");
	expect_err("[agentd]\n= 5\n", "t.conf:2: syntax error");

	/* a line inih could not hold whole */
	snprintf(text, sizeof(text), "[spool]\ndir = /%0199d\n", 0);
	expect_err(text, "t.conf:2: syntax error (line longer than 198 bytes)");
}
END_TEST

START_TEST(the_first_error_is_reported)
{
	/* syntax error before a bad value, and the other way round */
	expect_err("[agentd]\nnonsense\nlog_level = x\n", "t.conf:2: syntax error");
	expect_err("[agentd]\nlog_level = x\nnonsense\n",
		   "t.conf:2: log_level: bad value \"x\" (expected debug, info, warn or error)");
	expect_err("[agentd]\nnonsense\n[nope]\n", "t.conf:2: syntax error");
	expect_err("[nope]\nnonsense\n", "t.conf:1: [nope]: unknown section");
	expect_err("[agentd]\nfoo = 1\nnonsense\nbar = 2\n", "t.conf:2: foo: unknown key in [agentd]");
}
END_TEST

START_TEST(comments_blanks_and_line_endings)
{
	struct config c;

	expect_ok(
		&c,
		"\xef\xbb\xbf[batch]\r\n"
		"\t max_records = 10   ; inline comment\r\n"
		"    ; indented comment\r\n"
		"  # another\n"
		"interval_ms: 20\n"
		"# " /* a long comment is fine */
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
		"  gzip_level = 5\n"
		"[spool]\n"
		"dir = /a;b\n"
		"[batch]\n"
		"max_records = 20");
	ck_assert_uint_eq(c.batch.max_records, 20); /* the last one wins */
	ck_assert_uint_eq(c.batch.interval_ms, 20);
	ck_assert_int_eq(c.batch.gzip_level, 5);
	ck_assert_str_eq(c.spool.dir, "/a;b");
	config_free(&c);

	/* '#' after a value is not a comment */
	expect_err("[batch]\ninterval_ms = 5 # ms\n",
		   "t.conf:2: interval_ms: bad value \"5 # ms\" (expected an integer 1..3600000)");
}
END_TEST

/* ---- cross-key checks -------------------------------------------------- */

START_TEST(cross_key_checks_name_the_key_set_last)
{
	expect_err("[retry]\ninitial_backoff_ms = 60000\n",
		   "t.conf:2: initial_backoff_ms: 60000 is greater than [retry] max_backoff_ms (30000)");
	expect_err("[retry]\ninitial_backoff_ms = 100\nmax_backoff_ms = 50\n",
		   "t.conf:3: max_backoff_ms: 50 is less than [retry] initial_backoff_ms (100)");
	expect_err("[upstream]\ntimeout_ms = 1000\n",
		   "t.conf:2: timeout_ms: 1000 is less than [upstream] connect_timeout_ms (3000)");
	expect_err("[ingest]\nreceive_buffer_bytes = 64K\n",
		   "t.conf:2: receive_buffer_bytes: 65536 is less than [ingest] max_record_bytes (131072)");
	expect_err("[batch]\nmax_bytes = 64K\n",
		   "t.conf:2: max_bytes: 65536 is less than [ingest] max_record_bytes (131072)");
	expect_err("[queue]\nmax_records = 999\n",
		   "t.conf:2: max_records: 999 is less than [batch] max_records (1000)");
	expect_err("[batch]\nmax_bytes = 64M\n", "t.conf:2: max_bytes: 67108864 is greater than [queue] max_bytes "
						 "(33554432)");
	expect_err("[spool]\nsegment_bytes = 1M\n",
		   "t.conf:2: segment_bytes: 1048576 is less than [batch] max_bytes (4194304)");
	expect_err("[spool]\nmax_bytes = 1M\n",
		   "t.conf:2: max_bytes: 1048576 is less than [spool] segment_bytes (8388608)");
	expect_err("[control]\nsocket = /run/agentd/agentd.sock\n",
		   "t.conf:2: socket: \"/run/agentd/agentd.sock\" is also [ingest] socket");
	expect_err("[ingest]\nstream_socket = /x\n[control]\nsocket = /y\n[ingest]\nstream_socket = /y\n",
		   "t.conf:6: stream_socket: \"/y\" is also [control] socket");
	expect_err("[spool]\nmode = always\ndir =\n", "t.conf:3: dir: [spool] mode = always needs a [spool] dir");
	expect_err("[spool]\ndir =\nmode = always\n", "t.conf:3: mode: [spool] mode = always needs a [spool] dir");
}
END_TEST

START_TEST(cross_key_checks_pass_when_consistent)
{
	struct config c;

	expect_ok(&c, "[ingest]\nstream_socket =\n[control]\nsocket =\n[spool]\ndir =\n"
		      "[retry]\ninitial_backoff_ms = 30000\n");
	ck_assert_str_eq(c.ingest.stream_socket, "");
	ck_assert_str_eq(c.control.socket, "");
	config_free(&c);
}
END_TEST

/* ---- config_load ------------------------------------------------------- */

static void write_tmp(char *path, size_t len, const char *data, size_t n)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(path, len, "%s/test_config.XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	close(fd);
}

START_TEST(failed_load_keeps_the_old_config)
{
	struct config c, before;
	char path[256], err[ERRLEN], want[ERRLEN + 300];
	static const char bad[] = "[batch]\nmax_records = 5\ngzip_level = 10\n";

	ck_assert_int_eq(config_defaults(&c), 0);
	c.batch.max_records = 42;
	memcpy(&before, &c, sizeof(c));
	write_tmp(path, sizeof(path), bad, sizeof(bad) - 1);
	ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: gzip_level: bad value \"10\" (expected an integer 1..9)", path);
	ck_assert_str_eq(err, want);
	ck_assert(memcmp(&c, &before, sizeof(c)) == 0);
	ck_assert_uint_eq(c.batch.max_records, 42);
	ck_assert_str_eq(c.upstream.url, "http://127.0.0.1:8000/logs");
	unlink(path);

	/* a missing file: -ENOENT, still untouched */
	ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, want);
	ck_assert(memcmp(&c, &before, sizeof(c)) == 0);
	config_free(&c);
}
END_TEST

START_TEST(load_reads_a_file)
{
	struct config c;
	char path[256], err[ERRLEN];
	static const char good[] = "[upstream]\nurl = https://h/logs\n";

	write_tmp(path, sizeof(path), good, sizeof(good) - 1);
	ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), 0);
	ck_assert_str_eq(c.upstream.url, "https://h/logs");
	ck_assert_str_eq(c.path, path);
	config_free(&c);
	unlink(path);
}
END_TEST

START_TEST(load_refuses_nul_bytes_and_directories)
{
	struct config c;
	char path[256], err[ERRLEN], want[ERRLEN + 300];
	static const char nul[] = "[batch]\n\nmax_records = 5\0\n";

	write_tmp(path, sizeof(path), nul, sizeof(nul) - 1);
	ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: syntax error (NUL byte)", path);
	ck_assert_str_eq(err, want);
	unlink(path);

	ck_assert_int_eq(config_load(&c, ".", err, sizeof(err)), -EISDIR);
	ck_assert_int_eq(config_load(&c, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(config_load(NULL, CONF_FILE, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(config_load(&c, CONF_FILE, NULL, 0), 0); /* err is optional */
	config_free(&c);
}
END_TEST

START_TEST(small_error_buffer_is_cut_not_overrun)
{
	struct config c;
	char err[16];

	memset(err, 'z', sizeof(err));
	ck_assert_int_eq(config_parse_string(&c, "[batch]\ngzip_level = 0\n", "t.conf", err, 8), -EINVAL);
	ck_assert_str_eq(err, "t.conf:");
	ck_assert_int_eq(err[8], 'z');
}
END_TEST

START_TEST(free_is_null_safe_and_idempotent)
{
	struct config c;

	config_free(NULL);
	ck_assert_int_eq(config_defaults(&c), 0);
	config_free(&c);
	config_free(&c);
	ck_assert_ptr_null(c.upstream.url);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, defaults_are_documented_values);
	tcase_add_test(tc, empty_text_gives_defaults);
	tcase_add_test(tc, shipped_conf_parses_to_defaults);
	tcase_add_test(tc, shipped_conf_documents_every_key);
	tcase_add_loop_test(tc, each_key_takes_a_valid_value, 0, (int)(sizeof(valid) / sizeof(valid[0])));
	tcase_add_loop_test(tc, ranges_limit_minus_one_limit_plus_one, 0, (int)(sizeof(ranges) / sizeof(ranges[0])));
	tcase_add_test(tc, max_record_bytes_limit_is_the_protocol_frame);
	tcase_add_test(tc, integers_are_strict_decimal);
	tcase_add_test(tc, sizes_take_k_m_g_suffixes);
	tcase_add_test(tc, booleans_take_all_spellings);
	tcase_add_test(tc, modes_are_octal_up_to_0777);
	tcase_add_test(tc, enums_name_their_choices);
	tcase_add_test(tc, strings_are_checked);
	tcase_add_test(tc, socket_path_length_limit);
	tcase_add_test(tc, long_hostname_is_taken);
	tcase_add_test(tc, bad_value_names_file_line_and_key);
	tcase_add_test(tc, values_in_messages_are_escaped_and_cut);
	tcase_add_test(tc, unknown_key_and_section);
	tcase_add_test(tc, syntax_errors);
	tcase_add_test(tc, the_first_error_is_reported);
	tcase_add_test(tc, comments_blanks_and_line_endings);
	tcase_add_test(tc, cross_key_checks_name_the_key_set_last);
	tcase_add_test(tc, cross_key_checks_pass_when_consistent);
	tcase_add_test(tc, failed_load_keeps_the_old_config);
	tcase_add_test(tc, load_reads_a_file);
	tcase_add_test(tc, load_refuses_nul_bytes_and_directories);
	tcase_add_test(tc, small_error_buffer_is_cut_not_overrun);
	tcase_add_test(tc, free_is_null_safe_and_idempotent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
