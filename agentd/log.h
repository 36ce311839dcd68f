/*
 * log: agentd's own diagnostics, one line each on stderr, with a level.
 * Under systemd (JOURNAL_STREAM set) each line carries a <N> priority prefix
 * that journald understands. Only main.c and stage callbacks log.
 */
#ifndef AGENTD_LOG_H
#define AGENTD_LOG_H

enum { LOG_DEBUG_ = 0, LOG_INFO_ = 1, LOG_WARN_ = 2, LOG_ERROR_ = 3 };

void log_set_level(int level);
int log_get_level(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG_, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO_, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN_, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR_, __VA_ARGS__)

#endif
