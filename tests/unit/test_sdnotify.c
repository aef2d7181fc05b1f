/*
 * test_sdnotify.c - the systemd notify protocol against real AF_UNIX datagram sockets
 * (a path in a temp dir and an abstract name), and the watchdog environment.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "daemon/sdnotify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* One receiving socket, as systemd would hold it, and the NOTIFY_SOCKET value naming it. */
struct listener {
	int fd;
	char dir[64];	/* temp dir of a path socket, "" for an abstract one */
	char name[128]; /* the NOTIFY_SOCKET value */
	char buf[8192]; /* the last datagram received, NUL-terminated */
};

static void clear_env(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* Binds l->fd to l->name (a path or '@' + abstract name) and points NOTIFY_SOCKET at it. */
static void listener_bind(struct listener *l)
{
	struct sockaddr_un addr;
	size_t len = strlen(l->name);
	socklen_t addr_len;

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	assert_true(len < sizeof(addr.sun_path));
	memcpy(addr.sun_path, l->name, len);
	addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (l->name[0] == '@')
		addr.sun_path[0] = '\0';
	l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(l->fd >= 0);
	assert_int_equal(bind(l->fd, (const struct sockaddr *)&addr, addr_len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", l->name, 1), 0);
}

static int setup_path(void **state)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return -1;
	(void)snprintf(l->dir, sizeof(l->dir), "/tmp/lk-sdnotify-XXXXXX");
	if (!mkdtemp(l->dir)) {
		free(l);
		return -1;
	}
	(void)snprintf(l->name, sizeof(l->name), "%s/notify", l->dir);
	clear_env();
	listener_bind(l);
	*state = l;
	return 0;
}

static int setup_abstract(void **state)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return -1;
	(void)snprintf(l->name, sizeof(l->name), "@lockstep-test-sdnotify-%ld-%ld", (long)getpid(),
		       (long)time(NULL));
	clear_env();
	listener_bind(l);
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	struct listener *l = *state;

	clear_env();
	if (l->fd >= 0)
		(void)close(l->fd);
	if (l->dir[0]) {
		(void)unlink(l->name);
		(void)rmdir(l->dir);
	}
	free(l);
	return 0;
}

/* Receives one datagram without waiting (the send already queued it) into l->buf and
 * returns its length. */
static size_t recv_one(struct listener *l)
{
	ssize_t n = recv(l->fd, l->buf, sizeof(l->buf) - 1, MSG_DONTWAIT);

	assert_true(n >= 0);
	l->buf[n] = '\0';
	return (size_t)n;
}

static void assert_nothing_queued(struct listener *l)
{
	errno = 0;
	assert_int_equal(recv(l->fd, l->buf, sizeof(l->buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void test_notify_sends_exact_bytes(void **state)
{
	struct listener *l = *state;
	const char *msg = "READY=1\nSTATUS=serving 2 jobs";

	assert_int_equal(lk_sd_notify(msg), 1);
	assert_int_equal(recv_one(l), strlen(msg));
	assert_string_equal(l->buf, msg);

	assert_int_equal(lk_sd_notify("WATCHDOG=1"), 1);
	assert_int_equal(recv_one(l), strlen("WATCHDOG=1"));
	assert_string_equal(l->buf, "WATCHDOG=1");
	assert_nothing_queued(l);
}

static void test_notifyf_formats(void **state)
{
	struct listener *l = *state;
	char big[5000];

	assert_int_equal(lk_sd_notifyf("STATUS=serving %d jobs, %s", 4, "1 realtime"), 1);
	recv_one(l);
	assert_string_equal(l->buf, "STATUS=serving 4 jobs, 1 realtime");

	/* Longer than a notification may be: refused whole, never sent truncated. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	errno = 0;
	assert_int_equal(lk_sd_notifyf("STATUS=%s", big), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_nothing_queued(l);
}

static void test_reloading_carries_monotonic_usec(void **state)
{
	struct listener *l = *state;
	struct timespec ts;
	unsigned long long before, after, got = 0;
	char *end;
	const char *p;

	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	before = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
	assert_int_equal(lk_sd_notify_reloading("reloading config"), 1);
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	after = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;

	recv_one(l);
	p = "RELOADING=1\nMONOTONIC_USEC=";
	assert_memory_equal(l->buf, p, strlen(p));
	got = strtoull(l->buf + strlen(p), &end, 10);
	assert_string_equal(end, "\nSTATUS=reloading config");
	assert_true(got >= before && got <= after);

	assert_int_equal(lk_sd_notify_reloading(NULL), 1);
	recv_one(l);
	assert_memory_equal(l->buf, p, strlen(p));
	(void)strtoull(l->buf + strlen(p), &end, 10);
	assert_string_equal(end, "");
}

static void test_monotonic_usec_buffer(void **state)
{
	char out[48], small[8];

	(void)state;
	assert_int_equal(lk_sd_monotonic_usec(out, sizeof(out)), 0);
	assert_memory_equal(out, "MONOTONIC_USEC=", 15);
	assert_true(strlen(out) > 15);
	errno = 0;
	assert_int_equal(lk_sd_monotonic_usec(small, sizeof(small)), -1);
	assert_int_equal(errno, EINVAL);
}

/* A receiver that stops reading must not block the daemon: the queue fills and the send
 * fails with EAGAIN. */
static void test_full_socket_does_not_block(void **state)
{
	struct listener *l = *state;
	int rc = 1, i;

	for (i = 0; i < 100000 && rc == 1; i++)
		rc = lk_sd_notify("WATCHDOG=1");
	assert_int_equal(rc, -1);
	assert_int_equal(errno, EAGAIN);
	assert_true(i > 1);
	/* What was queued arrived whole; draining makes room again. */
	recv_one(l);
	assert_string_equal(l->buf, "WATCHDOG=1");
	assert_int_equal(lk_sd_notify("WATCHDOG=1"), 1);
}

static void test_not_under_systemd(void **state)
{
	(void)state;
	clear_env();
	assert_int_equal(lk_sd_notify("READY=1"), 0);
	assert_int_equal(lk_sd_notifyf("STATUS=%d", 1), 0);
	assert_int_equal(lk_sd_notify_reloading(NULL), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
	assert_int_equal(lk_sd_notify("READY=1"), 0);
	clear_env();
}

static void notify_fails_with(const char *socket_name, int want_errno)
{
	assert_int_equal(setenv("NOTIFY_SOCKET", socket_name, 1), 0);
	errno = 0;
	assert_int_equal(lk_sd_notify("READY=1"), -1);
	if (errno != want_errno)
		fail_msg("NOTIFY_SOCKET='%s': errno %d (%s), want %d", socket_name, errno,
			 strerror(errno), want_errno);
}

static void test_notify_errors_keep_errno(void **state)
{
	char longname[200];

	(void)state;
	clear_env();
	errno = 0;
	assert_int_equal(lk_sd_notify(NULL), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lk_sd_notify(""), -1);

	notify_fails_with("vsock:2:1234", EAFNOSUPPORT);
	notify_fails_with("relative/notify", EAFNOSUPPORT);
	notify_fails_with("@", EINVAL);
	notify_fails_with("/nonexistent-lockstep-dir/notify", ENOENT);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	notify_fails_with(longname, ENAMETOOLONG);
	clear_env();
}

static void watchdog_is(const char *usec, const char *pid, int64_t want)
{
	clear_env();
	if (usec)
		assert_int_equal(setenv("WATCHDOG_USEC", usec, 1), 0);
	if (pid)
		assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
	if (lk_sd_watchdog_ms() != want)
		fail_msg("WATCHDOG_USEC=%s WATCHDOG_PID=%s: got %lld, want %lld",
			 usec ? usec : "(unset)", pid ? pid : "(unset)",
			 (long long)lk_sd_watchdog_ms(), (long long)want);
	clear_env();
}

static void test_watchdog_interval(void **state)
{
	char me[32], other[32];

	(void)state;
	(void)snprintf(me, sizeof(me), "%ld", (long)getpid());
	(void)snprintf(other, sizeof(other), "%ld", (long)getpid() + 1);

	watchdog_is(NULL, NULL, 0);
	watchdog_is("30000000", NULL, 30000);
	watchdog_is("30000000", me, 30000);
	watchdog_is("30000000", "", 30000); /* empty pid: as if unset */
	watchdog_is("1500", NULL, 2);	    /* rounded up, never to 0 */
	watchdog_is("1", NULL, 1);
	watchdog_is("18446744073709551614", NULL, 18446744073709552LL);

	watchdog_is("30000000", other, 0); /* inherited from another process */
	watchdog_is("30000000", "abc", 0);
	watchdog_is("30000000", "-1", 0);
	watchdog_is("", NULL, 0);
	watchdog_is("0", NULL, 0);
	watchdog_is("abc", NULL, 0);
	watchdog_is("30s", NULL, 0);
	watchdog_is("-5", NULL, 0);
	watchdog_is("+5", NULL, 0);
	watchdog_is(" 5", NULL, 0);
	watchdog_is("5 ", NULL, 0);
	watchdog_is("18446744073709551615", NULL, 0); /* systemd's USEC_INFINITY */
	watchdog_is("18446744073709551616", NULL, 0); /* overflows 64 bits */
	watchdog_is("99999999999999999999999", NULL, 0);
}

static void test_notify_env_names(void **state)
{
	(void)state;
	assert_true(lk_sd_is_notify_env("NOTIFY_SOCKET=/run/systemd/notify"));
	assert_true(lk_sd_is_notify_env("WATCHDOG_USEC=30000000"));
	assert_true(lk_sd_is_notify_env("WATCHDOG_PID=42"));
	assert_true(lk_sd_is_notify_env("NOTIFY_SOCKET="));
	assert_false(lk_sd_is_notify_env("NOTIFY_SOCKETS=x"));
	assert_false(lk_sd_is_notify_env("NOTIFY_SOCKET"));
	assert_false(lk_sd_is_notify_env("HOME=/root"));
	assert_false(lk_sd_is_notify_env("LOCKSTEP_FENCING_TOKEN=7"));
	assert_false(lk_sd_is_notify_env(""));
	assert_false(lk_sd_is_notify_env(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_notify_sends_exact_bytes, setup_path,
						teardown),
		cmocka_unit_test_setup_teardown(test_notify_sends_exact_bytes, setup_abstract,
						teardown),
		cmocka_unit_test_setup_teardown(test_notifyf_formats, setup_path, teardown),
		cmocka_unit_test_setup_teardown(test_reloading_carries_monotonic_usec,
						setup_abstract, teardown),
		cmocka_unit_test_setup_teardown(test_full_socket_does_not_block, setup_path,
						teardown),
		cmocka_unit_test(test_monotonic_usec_buffer),
		cmocka_unit_test(test_not_under_systemd),
		cmocka_unit_test(test_notify_errors_keep_errno),
		cmocka_unit_test(test_watchdog_interval),
		cmocka_unit_test(test_notify_env_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
