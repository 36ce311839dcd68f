/*
 * listenfds: socket activation as systemd hands it over.
 *
 * Passed fds live at 3, 4, ..., where Check may keep its own files, so every
 * case runs in a child of its own that closes fds 3.. first, places its
 * sockets there, and reports a failed expectation back through a pipe kept
 * far above them.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listenfds.h"

#define REPORT_FD 900
#define CLEAN_TO 256

#define REQUIRE(cond)                                                                                                  \
	do {                                                                                                           \
		if (!(cond))                                                                                           \
			child_fail(__LINE__, #cond);                                                                   \
	} while (0)

static void child_fail(int line, const char *expr)
{
	char msg[512];
	int l = snprintf(msg, sizeof(msg), "line %d: %s (errno %d)", line, expr, errno);
	if (l > 0 && write(REPORT_FD, msg, (size_t)l) < 0)
		_exit(3);
	_exit(1);
}

static void run_in_child(void (*scenario)(void))
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (dup2(p[1], REPORT_FD) < 0)
			_exit(2);
		for (int fd = 3; fd < CLEAN_TO; fd++)
			close(fd);
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		listenfds_reset();
		scenario();
		_exit(0);
	}
	close(p[1]);
	char msg[512] = {0};
	ssize_t r = read(p[0], msg, sizeof(msg) - 1);
	(void)r;
	close(p[0]);
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %s", msg[0] ? msg : "(crashed)");
}

/* Put fd at target (closing the original). */
static void place(int fd, int target)
{
	REQUIRE(fd >= 0);
	if (fd == target)
		return;
	REQUIRE(dup2(fd, target) == target);
	close(fd);
}

static int dgram(void)
{
	return socket(AF_UNIX, SOCK_DGRAM, 0);
}

/* A listening stream socket, autobound in the abstract namespace. */
static int listening_stream(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(sa_family_t)) == 0);
	REQUIRE(listen(fd, 8) == 0);
	return fd;
}

static void set_env(const char *pid, const char *n, const char *names)
{
	char own[32];
	if (!pid) {
		snprintf(own, sizeof(own), "%ld", (long)getpid());
		pid = own;
	}
	REQUIRE(setenv("LISTEN_PID", pid, 1) == 0);
	if (n)
		REQUIRE(setenv("LISTEN_FDS", n, 1) == 0);
	if (names)
		REQUIRE(setenv("LISTEN_FDNAMES", names, 1) == 0);
}

static int env_clean(void)
{
	return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
}

static int cloexec(int fd)
{
	int f = fcntl(fd, F_GETFD);
	return f >= 0 && (f & FD_CLOEXEC);
}

static int is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* systemd's usual hand-over: ingest (dgram) at 3, stream at 4. */
static void sc_ingest_and_stream_taken(void)
{
	place(dgram(), 3);
	place(listening_stream(), 4);
	set_env(NULL, "2", "ingest:stream");
	REQUIRE(listenfds_parse() == 2);
	REQUIRE(env_clean());
	REQUIRE(cloexec(3) && cloexec(4));
	REQUIRE(listenfds_take(LISTENFDS_INGEST, SOCK_DGRAM) == 3);
	REQUIRE(listenfds_take(LISTENFDS_STREAM, SOCK_STREAM) == 4);
	REQUIRE(listenfds_take(LISTENFDS_INGEST, SOCK_DGRAM) == -ENOENT);
	REQUIRE(listenfds_take(LISTENFDS_STREAM, SOCK_STREAM) == -ENOENT);
	REQUIRE(listenfds_parse() == 2); /* parsed once: the env is gone */
}

/* The order is systemd's to choose; names decide. */
static void sc_names_not_order_decide(void)
{
	place(listening_stream(), 3);
	place(dgram(), 4);
	set_env(NULL, "2", "stream:ingest");
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == 4);
	REQUIRE(listenfds_take("stream", SOCK_STREAM) == 3);
}

static void sc_no_env_is_none(void)
{
	REQUIRE(listenfds_parse() == 0);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -ENOENT);
}

static void sc_pid_mismatch_is_none_and_cleans_env(void)
{
	place(dgram(), 3);
	char pid[32];
	snprintf(pid, sizeof(pid), "%ld", (long)getppid());
	set_env(pid, "1", "ingest");
	REQUIRE(listenfds_parse() == 0);
	REQUIRE(env_clean());
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -ENOENT);
	REQUIRE(!cloexec(3)); /* not ours: left alone */
}

static void sc_missing_fds_var_is_none(void)
{
	place(dgram(), 3);
	set_env(NULL, NULL, "ingest");
	REQUIRE(listenfds_parse() == 0);
	REQUIRE(env_clean());
}

static void sc_zero_fds_is_none(void)
{
	set_env(NULL, "0", NULL);
	REQUIRE(listenfds_parse() == 0);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -ENOENT);
}

static void sc_malformed_numbers_are_einval(void)
{
	static const char *bad_n[] = {"", "x", "-1", " 1", "1 ", "+1", "0x1", "99999999999999999999"};
	place(dgram(), 3);
	for (size_t i = 0; i < sizeof(bad_n) / sizeof(bad_n[0]); i++) {
		listenfds_reset();
		set_env(NULL, bad_n[i], "ingest");
		REQUIRE(listenfds_parse() == -EINVAL);
		REQUIRE(env_clean());
		REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -EINVAL); /* the error sticks */
	}
	static const char *bad_pid[] = {"", "abc", "0", "-5", "12x"};
	for (size_t i = 0; i < sizeof(bad_pid) / sizeof(bad_pid[0]); i++) {
		listenfds_reset();
		set_env(bad_pid[i], "1", "ingest");
		REQUIRE(listenfds_parse() == -EINVAL);
		REQUIRE(env_clean());
	}
}

static void sc_name_count_must_match(void)
{
	place(dgram(), 3);
	place(dgram(), 4);
	static const char *bad[] = {"ingest", "ingest:stream:extra", "", "ingest:", ":stream", "ingest::stream"};
	const char *n[] = {"2", "2", "2", "2", "2", "2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		listenfds_reset();
		set_env(NULL, n[i], bad[i]);
		REQUIRE(listenfds_parse() == -EINVAL);
		REQUIRE(env_clean());
		REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -EINVAL);
	}
	listenfds_reset();
	set_env(NULL, "1", "ingest:stream");
	REQUIRE(listenfds_parse() == -EINVAL);
}

static void sc_names_with_control_bytes_rejected(void)
{
	place(dgram(), 3);
	set_env(NULL, "1", "in\tgest");
	REQUIRE(listenfds_parse() == -EINVAL);
}

static void sc_name_length_limit(void)
{
	char name[LISTENFDS_NAME_MAX + 2];
	place(dgram(), 3);
	memset(name, 'n', sizeof(name));
	name[LISTENFDS_NAME_MAX] = '\0'; /* 255: fits */
	set_env(NULL, "1", name);
	REQUIRE(listenfds_take(name, SOCK_DGRAM) == 3);

	listenfds_reset();
	name[LISTENFDS_NAME_MAX] = 'n';
	name[LISTENFDS_NAME_MAX + 1] = '\0'; /* 256 */
	set_env(NULL, "1", name);
	REQUIRE(listenfds_parse() == -EINVAL);
}

static void sc_without_names_all_are_unknown(void)
{
	place(dgram(), 3);
	set_env(NULL, "1", NULL);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -ENOENT);
	REQUIRE(listenfds_take("unknown", SOCK_DGRAM) == 3);
}

static void sc_wrong_type_is_eprototype_and_not_taken(void)
{
	place(dgram(), 3);
	set_env(NULL, "1", "stream");
	REQUIRE(listenfds_take("stream", SOCK_STREAM) == -EPROTOTYPE);
	REQUIRE(listenfds_take("stream", SOCK_DGRAM) == 3);
}

static void sc_stream_must_be_listening(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	place(fd, 3);
	set_env(NULL, "1", "stream");
	REQUIRE(listenfds_take("stream", SOCK_STREAM) == -EPROTOTYPE);
}

static void sc_non_socket_is_eprototype(void)
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	place(p[0], 3);
	place(p[1], 4);
	set_env(NULL, "2", "ingest:stream");
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -EPROTOTYPE);
	REQUIRE(listenfds_take("stream", SOCK_STREAM) == -EPROTOTYPE);
}

static void sc_closed_fd_is_ebadf(void)
{
	place(dgram(), 3); /* 4 is not there */
	set_env(NULL, "2", "ingest:stream");
	REQUIRE(listenfds_parse() == -EBADF);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -EBADF);
}

static void sc_same_name_twice_taken_in_order(void)
{
	place(dgram(), 3);
	place(dgram(), 4);
	set_env(NULL, "2", "ingest:ingest");
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == 3);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == 4);
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == -ENOENT);
}

static void sc_bad_arguments(void)
{
	REQUIRE(listenfds_take(NULL, SOCK_DGRAM) == -EINVAL);
	REQUIRE(listenfds_take("", SOCK_DGRAM) == -EINVAL);
	REQUIRE(listenfds_take("ingest", 0) == -EINVAL);
}

static void sc_close_untaken_closes_only_the_rest(void)
{
	place(dgram(), 3);
	place(listening_stream(), 4);
	place(dgram(), 5);
	set_env(NULL, "3", "ingest:stream:other");
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == 3);
	listenfds_close_untaken();
	REQUIRE(is_open(3));
	REQUIRE(!is_open(4));
	REQUIRE(!is_open(5));
	REQUIRE(listenfds_take("stream", SOCK_STREAM) == -ENOENT);
}

/* n fds at 3.., named n0:n1:...; returns the parse result. */
static int pass_n(int n)
{
	static char names[LISTENFDS_MAX * 8 + 16];
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		place(dgram(), LISTENFDS_START + i);
		int l = snprintf(names + off, sizeof(names) - off, "%sn%d", i ? ":" : "", i);
		REQUIRE(l > 0 && (size_t)l < sizeof(names) - off);
		off += (size_t)l;
	}
	char ns[16];
	snprintf(ns, sizeof(ns), "%d", n);
	set_env(NULL, ns, names);
	return listenfds_parse();
}

static void sc_limit_minus_one(void)
{
	REQUIRE(pass_n(LISTENFDS_MAX - 1) == LISTENFDS_MAX - 1);
	char last[16];
	snprintf(last, sizeof(last), "n%d", LISTENFDS_MAX - 2);
	REQUIRE(listenfds_take(last, SOCK_DGRAM) == LISTENFDS_START + LISTENFDS_MAX - 2);
}

static void sc_limit(void)
{
	REQUIRE(pass_n(LISTENFDS_MAX) == LISTENFDS_MAX);
	char last[16];
	snprintf(last, sizeof(last), "n%d", LISTENFDS_MAX - 1);
	REQUIRE(listenfds_take(last, SOCK_DGRAM) == LISTENFDS_START + LISTENFDS_MAX - 1);
	REQUIRE(cloexec(LISTENFDS_START) && cloexec(LISTENFDS_START + LISTENFDS_MAX - 1));
}

static void sc_limit_plus_one(void)
{
	REQUIRE(pass_n(LISTENFDS_MAX + 1) == -E2BIG);
	REQUIRE(env_clean());
	REQUIRE(listenfds_take("n0", SOCK_DGRAM) == -E2BIG);
}

static void sc_reset_parses_again(void)
{
	place(dgram(), 3);
	set_env(NULL, "x", "ingest");
	REQUIRE(listenfds_parse() == -EINVAL);
	set_env(NULL, "1", "ingest");
	REQUIRE(listenfds_parse() == -EINVAL); /* parsed once */
	listenfds_reset();
	REQUIRE(listenfds_take("ingest", SOCK_DGRAM) == 3);
}

#define CASE(fn)                                                                                                       \
	START_TEST(fn)                                                                                                 \
	{                                                                                                              \
		run_in_child(sc_##fn);                                                                                 \
	}                                                                                                              \
	END_TEST

CASE(ingest_and_stream_taken)
CASE(names_not_order_decide)
CASE(no_env_is_none)
CASE(pid_mismatch_is_none_and_cleans_env)
CASE(missing_fds_var_is_none)
CASE(zero_fds_is_none)
CASE(malformed_numbers_are_einval)
CASE(name_count_must_match)
CASE(names_with_control_bytes_rejected)
CASE(name_length_limit)
CASE(without_names_all_are_unknown)
CASE(wrong_type_is_eprototype_and_not_taken)
CASE(stream_must_be_listening)
CASE(non_socket_is_eprototype)
CASE(closed_fd_is_ebadf)
CASE(same_name_twice_taken_in_order)
CASE(bad_arguments)
CASE(close_untaken_closes_only_the_rest)
CASE(limit_minus_one)
CASE(limit)
CASE(limit_plus_one)
CASE(reset_parses_again)

static Suite *suite(void)
{
	Suite *s = suite_create("listenfds");
	TCase *tc = tcase_create("listenfds");
	tcase_add_test(tc, ingest_and_stream_taken);
	tcase_add_test(tc, names_not_order_decide);
	tcase_add_test(tc, no_env_is_none);
	tcase_add_test(tc, pid_mismatch_is_none_and_cleans_env);
	tcase_add_test(tc, missing_fds_var_is_none);
	tcase_add_test(tc, zero_fds_is_none);
	tcase_add_test(tc, malformed_numbers_are_einval);
	tcase_add_test(tc, name_count_must_match);
	tcase_add_test(tc, names_with_control_bytes_rejected);
	tcase_add_test(tc, name_length_limit);
	tcase_add_test(tc, without_names_all_are_unknown);
	tcase_add_test(tc, wrong_type_is_eprototype_and_not_taken);
	tcase_add_test(tc, stream_must_be_listening);
	tcase_add_test(tc, non_socket_is_eprototype);
	tcase_add_test(tc, closed_fd_is_ebadf);
	tcase_add_test(tc, same_name_twice_taken_in_order);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, close_untaken_closes_only_the_rest);
	tcase_add_test(tc, limit_minus_one);
	tcase_add_test(tc, limit);
	tcase_add_test(tc, limit_plus_one);
	tcase_add_test(tc, reset_parses_again);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
