#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int min_level = LOG_INFO_;

void log_set_level(int level)
{
	min_level = level;
}

int log_get_level(void)
{
	return min_level;
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warning", "error"};
	static const char prio[] = {'7', '6', '4', '3'};
	if (level < min_level || level < 0 || level > LOG_ERROR_)
		return;
	char line[1024];
	int n;
	if (getenv("JOURNAL_STREAM"))
		n = snprintf(line, sizeof line, "<%c>%s: ", prio[level], names[level]);
	else
		n = snprintf(line, sizeof line, "agentd: %s: ", names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}
