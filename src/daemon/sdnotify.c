/*
 * sdnotify.c - sd_notify(3) without libsystemd: a datagram to $NOTIFY_SOCKET, one
 * short-lived socket per message, and the watchdog interval from the environment.
 */
#include "sdnotify.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The largest datagram lk_sd_notifyf() builds; systemd itself accepts up to 4 KiB. */
#define NOTIFY_MAX 4096

/* Fills *addr from $NOTIFY_SOCKET's value and returns the address length to pass to
 * sendto(), or 0 with errno set. An abstract name ('@' first) becomes a leading NUL and
 * the length counts exactly its bytes: abstract names are not NUL-terminated. */
static socklen_t notify_addr(const char *path, struct sockaddr_un *addr)
{
	size_t len = strlen(path);

	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (path[0] != '/' && path[0] != '@') {
		errno = EAFNOSUPPORT;
		return 0;
	}
	if (path[0] == '@' && len < 2) {
		errno = EINVAL;
		return 0;
	}
	if (len >= sizeof(addr->sun_path)) {
		errno = ENAMETOOLONG;
		return 0;
	}
	memcpy(addr->sun_path, path, len);
	if (path[0] == '@') {
		addr->sun_path[0] = '\0';
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

int lk_sd_notify(const char *state)
{
	struct sockaddr_un addr;
	const char *path = getenv("NOTIFY_SOCKET");
	socklen_t addr_len;
	size_t len;
	ssize_t sent;
	int fd, saved;

	if (!state || !*state) {
		errno = EINVAL;
		return -1;
	}
	if (!path || !*path)
		return 0;
	addr_len = notify_addr(path, &addr);
	if (addr_len == 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	len = strlen(state);
	do
		sent = sendto(fd, state, len, MSG_NOSIGNAL | MSG_DONTWAIT,
			      (const struct sockaddr *)&addr, addr_len);
	while (sent < 0 && errno == EINTR);
	saved = errno;
	(void)close(fd);
	if (sent < 0) {
		errno = saved;
		return -1;
	}
	if ((size_t)sent != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 1;
}

int lk_sd_notifyf(const char *fmt, ...)
{
	char msg[NOTIFY_MAX];
	va_list ap;
	int n;

	if (!fmt) {
		errno = EINVAL;
		return -1;
	}
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(msg)) {
		errno = EMSGSIZE;
		return -1;
	}
	return lk_sd_notify(msg);
}

int lk_sd_monotonic_usec(char *out, unsigned out_size)
{
	struct timespec ts;
	unsigned long long usec;
	int n;

	if (!out || clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		errno = EINVAL;
		return -1;
	}
	usec = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
	n = snprintf(out, out_size, "MONOTONIC_USEC=%llu", usec);
	if (n < 0 || (unsigned)n >= out_size) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int lk_sd_notify_reloading(const char *status)
{
	char mono[48];

	if (lk_sd_monotonic_usec(mono, sizeof(mono)) != 0)
		return -1;
	if (status)
		return lk_sd_notifyf("RELOADING=1\n%s\nSTATUS=%s", mono, status);
	return lk_sd_notifyf("RELOADING=1\n%s", mono);
}

/* Parses a decimal of digits only (no sign, no spaces) into *out; 0 or -1. */
static int parse_digits(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*s < '0' || *s > '9' || v > (ULLONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int64_t lk_sd_watchdog_ms(void)
{
	const char *usec_s = getenv("WATCHDOG_USEC");
	const char *pid_s = getenv("WATCHDOG_PID");
	unsigned long long usec, pid, ms;

	/* 0 and UINT64_MAX (systemd's "infinity") both mean no watchdog, as in sd_watchdog_enabled.
	 */
	if (parse_digits(usec_s, &usec) != 0 || usec == 0 || usec == ULLONG_MAX)
		return 0;
	if (pid_s && *pid_s) {
		if (parse_digits(pid_s, &pid) != 0 || pid != (unsigned long long)getpid())
			return 0;
	}
	ms = usec / 1000 + (usec % 1000 != 0);
	if (ms > (unsigned long long)INT64_MAX)
		return 0;
	return (int64_t)ms;
}

bool lk_sd_is_notify_env(const char *entry)
{
	static const char *const names[] = {"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="};

	if (!entry)
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strncmp(entry, names[i], strlen(names[i])) == 0)
			return true;
	}
	return false;
}
