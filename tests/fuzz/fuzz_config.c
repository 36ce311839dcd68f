/*
 * fuzz_config: feeds arbitrary text to config_parse_string(). Any crash,
 * leak or sanitizer report is a bug; a parse error is a normal outcome.
 * The input is cut at its first NUL (the parser takes a C string).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char err[256];
	char *text;

	if (size > 1024 * 1024)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (config_parse_string(&c, text, "fuzz.conf", err, sizeof(err)) == 0) {
		/* a parsed config must hold every string */
		if (!c.upstream.url || !c.ingest.socket || !c.spool.dir || !c.control.socket || !c.agentd.hostname)
			abort();
		config_free(&c);
	} else if (!memchr(err, '\0', sizeof(err))) {
		abort();
	}
	free(text);
	return 0;
}
