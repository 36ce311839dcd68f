/* sdnotify: what arrives on a NOTIFY_SOCKET, and how the environment is read. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

static char dir[256];
static char path[300];
static int rx = -1;

static void clear_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void setup(void)
{
	clear_env();
	const char *t = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/sdnotify-XXXXXX", t && *t && strlen(t) < 60 ? t : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	rx = -1;
}

static void teardown(void)
{
	if (rx >= 0)
		close(rx);
	unlink(path);
	rmdir(dir);
	clear_env();
}

/* A datagram socket bound at path, like the service manager's. */
static int bind_path(const char *p)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	ck_assert_uint_lt(strlen(p), sizeof(a.sun_path));
	memcpy(a.sun_path, p, strlen(p));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* One datagram received without waiting (unix datagrams arrive at send). */
static ssize_t recv_now(int fd, char *buf, size_t len)
{
	ssize_t r = recv(fd, buf, len - 1, MSG_DONTWAIT);
	if (r >= 0)
		buf[r] = '\0';
	return r;
}

static void assert_received(const char *want)
{
	char buf[SDNOTIFY_MAX + 64];
	ssize_t r = recv_now(rx, buf, sizeof(buf));
	ck_assert_int_eq(r, (ssize_t)strlen(want));
	ck_assert_mem_eq(buf, want, strlen(want));
}

static void assert_nothing_queued(void)
{
	char buf[16];
	ck_assert_int_eq(recv_now(rx, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
}

START_TEST(send_to_path_socket_arrives_exactly)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert(sdnotify_enabled(&n));
	ck_assert_int_eq(sdnotify_send(&n, "READY=1\nSTATUS=up"), 0);
	assert_received("READY=1\nSTATUS=up");
	assert_nothing_queued();
	sdnotify_close(&n);
}
END_TEST

START_TEST(send_to_abstract_socket_arrives_exactly)
{
	char name[64];
	snprintf(name, sizeof(name), "agentd-test-sdnotify-%ld-%d", (long)getpid(), rand());
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path + 1, name, strlen(name));
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, len), 0);
	rx = fd;

	char env[80];
	snprintf(env, sizeof(env), "@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_int_eq(sdnotify_ready(&n), 0);
	assert_received("READY=1");
	sdnotify_close(&n);
}
END_TEST

START_TEST(unset_notify_socket_is_a_noop)
{
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert(!sdnotify_enabled(&n));
	ck_assert_int_eq(sdnotify_send(&n, "READY=1"), 0);
	ck_assert_int_eq(sdnotify_ready(&n), 0);
	ck_assert_int_eq(sdnotify_status(&n, "%d records", 5), 0);
	ck_assert_int_eq(sdnotify_watchdog(&n), 0);
	ck_assert_int_eq(sdnotify_stopping(&n), 0);
	ck_assert_int_eq(sdnotify_extend_timeout(&n, 1000000), 0);
	ck_assert_int_eq(sdnotify_reloading(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 0);
	sdnotify_close(&n);
	sdnotify_close(&n);
	sdnotify_close(NULL);
}
END_TEST

START_TEST(malformed_notify_socket_is_einval_and_off)
{
	static const char *bad[] = {"relative/path", "@", "", "vsock:2:1234"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("NOTIFY_SOCKET", bad[i], 1);
		struct sdnotify n;
		ck_assert_int_eq(sdnotify_open(&n), -EINVAL);
		ck_assert(!sdnotify_enabled(&n));
		ck_assert_int_eq(sdnotify_ready(&n), 0);
		sdnotify_close(&n);
	}
}
END_TEST

/* sun_path holds 108 bytes: a path needs its NUL, an abstract name does not. */
START_TEST(notify_socket_length_limits)
{
	struct sockaddr_un a;
	size_t max = sizeof(a.sun_path);
	char s[sizeof(a.sun_path) + 2];
	struct sdnotify n;

	memset(s, 'x', sizeof(s));
	s[0] = '/';
	s[max - 1] = '\0'; /* 107 bytes: fits */
	setenv("NOTIFY_SOCKET", s, 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert(sdnotify_enabled(&n));
	sdnotify_close(&n);
	s[max - 1] = 'x';
	s[max] = '\0'; /* 108 bytes: no room for the NUL */
	setenv("NOTIFY_SOCKET", s, 1);
	ck_assert_int_eq(sdnotify_open(&n), -EINVAL);

	s[0] = '@'; /* "@" + 107 bytes of name: fits */
	setenv("NOTIFY_SOCKET", s, 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	sdnotify_close(&n);
	s[max] = 'x';
	s[max + 1] = '\0'; /* "@" + 108 */
	setenv("NOTIFY_SOCKET", s, 1);
	ck_assert_int_eq(sdnotify_open(&n), -EINVAL);
	ck_assert(!sdnotify_enabled(&n));
}
END_TEST

START_TEST(send_without_listener_returns_errno)
{
	setenv("NOTIFY_SOCKET", path, 1); /* nobody bound there */
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_int_eq(sdnotify_ready(&n), -ENOENT);
	sdnotify_close(&n);
}
END_TEST

START_TEST(send_rejects_empty_and_null)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_int_eq(sdnotify_send(&n, ""), -EINVAL);
	ck_assert_int_eq(sdnotify_send(&n, NULL), -EINVAL);
	ck_assert_int_eq(sdnotify_send(NULL, "READY=1"), -EINVAL);
	ck_assert_int_eq(sdnotify_open(NULL), -EINVAL);
	assert_nothing_queued();
	sdnotify_close(&n);
}
END_TEST

START_TEST(send_size_limit_minus_one_limit_plus_one)
{
	rx = bind_path(path);
	int big = 1 << 20;
	setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	static char text[SDNOTIFY_MAX + 2];
	memset(text, 'a', sizeof(text) - 1);
	memcpy(text, "STATUS=", 7);

	text[SDNOTIFY_MAX - 1] = '\0';
	ck_assert_int_eq(sdnotify_send(&n, text), 0);
	assert_received(text);
	text[SDNOTIFY_MAX - 1] = 'a';
	text[SDNOTIFY_MAX] = '\0';
	ck_assert_int_eq(sdnotify_send(&n, text), 0);
	assert_received(text);
	text[SDNOTIFY_MAX] = 'a';
	text[SDNOTIFY_MAX + 1] = '\0';
	ck_assert_int_eq(sdnotify_send(&n, text), -EMSGSIZE);
	assert_nothing_queued();

	/* The same limit through the formatting helpers (text is limit+1 here). */
	ck_assert_int_eq(sdnotify_sendf(&n, "%s", text), -EMSGSIZE);
	ck_assert_int_eq(sdnotify_status(&n, "%s", text + 7), -EMSGSIZE);
	text[SDNOTIFY_MAX] = '\0';
	ck_assert_int_eq(sdnotify_sendf(&n, "%s", text), 0);
	assert_received(text);
	ck_assert_int_eq(sdnotify_status(&n, "%s", text + 7), 0);
	assert_received(text);
	assert_nothing_queued();
	sdnotify_close(&n);
}
END_TEST

START_TEST(helpers_send_documented_assignments)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_int_eq(sdnotify_ready(&n), 0);
	assert_received("READY=1");
	ck_assert_int_eq(sdnotify_watchdog(&n), 0);
	assert_received("WATCHDOG=1");
	ck_assert_int_eq(sdnotify_stopping(&n), 0);
	assert_received("STOPPING=1");
	ck_assert_int_eq(sdnotify_extend_timeout(&n, 15000000), 0);
	assert_received("EXTEND_TIMEOUT_USEC=15000000");
	ck_assert_int_eq(sdnotify_sendf(&n, "STATUS=%s %u", "queued", 7u), 0);
	assert_received("STATUS=queued 7");

	ck_assert_int_eq(sdnotify_reloading(&n), 0);
	char buf[256];
	ck_assert_int_gt(recv_now(rx, buf, sizeof(buf)), 0);
	static const char pre[] = "RELOADING=1\nMONOTONIC_USEC=";
	ck_assert_mem_eq(buf, pre, sizeof(pre) - 1);
	const char *num = buf + sizeof(pre) - 1;
	ck_assert(*num >= '1' && *num <= '9');
	ck_assert_uint_eq(strspn(num, "0123456789"), strlen(num));
	sdnotify_close(&n);
}
END_TEST

START_TEST(status_newlines_become_spaces)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_int_eq(sdnotify_status(&n, "queued %d\nREADY=1", 3), 0);
	assert_received("STATUS=queued 3 READY=1");
	sdnotify_close(&n);
}
END_TEST

/* A full manager queue must not block the loop: -EAGAIN comes back. */
START_TEST(full_receiver_queue_returns_eagain_without_blocking)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), 0);
	int r = 0, i;
	for (i = 0; i < 100000 && r == 0; i++)
		r = sdnotify_watchdog(&n);
	ck_assert_int_eq(r, -EAGAIN);
	ck_assert_int_gt(i, 1);
	sdnotify_close(&n);
}
END_TEST

START_TEST(watchdog_usec_parsed)
{
	struct sdnotify n;
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 30000000u);
	ck_assert(!sdnotify_enabled(&n)); /* watchdog value without a socket */
	sdnotify_close(&n);

	setenv("WATCHDOG_USEC", "1", 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 1);

	setenv("WATCHDOG_USEC", "18446744073709551614", 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), UINT64_MAX - 1);
}
END_TEST

START_TEST(watchdog_pid_must_be_ours)
{
	struct sdnotify n;
	char pid[32];
	setenv("WATCHDOG_USEC", "20000000", 1);

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 20000000u);

	snprintf(pid, sizeof(pid), "%ld", (long)getppid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_int_eq(sdnotify_open(&n), 0);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 0);

	setenv("WATCHDOG_PID", "notapid", 1);
	ck_assert_int_eq(sdnotify_open(&n), -EINVAL);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 0);
	setenv("WATCHDOG_PID", "0", 1);
	ck_assert_int_eq(sdnotify_open(&n), -EINVAL);
	ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 0);
}
END_TEST

START_TEST(watchdog_usec_malformed_is_einval_and_off)
{
	static const char *bad[] = {"",
				    "0",
				    "-1",
				    " 5",
				    "5 ",
				    "5s",
				    "abc",
				    "0x10",
				    "18446744073709551615",
				    "18446744073709551616",
				    "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("WATCHDOG_USEC", bad[i], 1);
		struct sdnotify n;
		ck_assert_msg(sdnotify_open(&n) == -EINVAL, "WATCHDOG_USEC=\"%s\"", bad[i]);
		ck_assert_uint_eq(sdnotify_watchdog_usec(&n), 0);
	}
}
END_TEST

/* A bad watchdog variable does not take notify down with it. */
START_TEST(bad_watchdog_keeps_notify_working)
{
	rx = bind_path(path);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "soon", 1);
	struct sdnotify n;
	ck_assert_int_eq(sdnotify_open(&n), -EINVAL);
	ck_assert(sdnotify_enabled(&n));
	ck_assert_int_eq(sdnotify_ready(&n), 0);
	assert_received("READY=1");
	sdnotify_close(&n);
}
END_TEST

START_TEST(environment_left_as_it_was)
{
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "1000", 1);
	struct sdnotify n;
	sdnotify_open(&n);
	ck_assert_str_eq(getenv("NOTIFY_SOCKET"), path);
	ck_assert_str_eq(getenv("WATCHDOG_USEC"), "1000");
	sdnotify_close(&n);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sdnotify");
	TCase *tc = tcase_create("sdnotify");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, send_to_path_socket_arrives_exactly);
	tcase_add_test(tc, send_to_abstract_socket_arrives_exactly);
	tcase_add_test(tc, unset_notify_socket_is_a_noop);
	tcase_add_test(tc, malformed_notify_socket_is_einval_and_off);
	tcase_add_test(tc, notify_socket_length_limits);
	tcase_add_test(tc, send_without_listener_returns_errno);
	tcase_add_test(tc, send_rejects_empty_and_null);
	tcase_add_test(tc, send_size_limit_minus_one_limit_plus_one);
	tcase_add_test(tc, helpers_send_documented_assignments);
	tcase_add_test(tc, status_newlines_become_spaces);
	tcase_add_test(tc, full_receiver_queue_returns_eagain_without_blocking);
	tcase_add_test(tc, watchdog_usec_parsed);
	tcase_add_test(tc, watchdog_pid_must_be_ours);
	tcase_add_test(tc, watchdog_usec_malformed_is_einval_and_off);
	tcase_add_test(tc, bad_watchdog_keeps_notify_working);
	tcase_add_test(tc, environment_left_as_it_was);
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
