/*
 * exec.c - supervises one exec job's command: reads its stdout and stderr as lines,
 * turns progress lines into callbacks, enforces timeout, deadline, stop and memory_max
 * on its process group, reaps it and says how it ended.
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include "exec.h"

#include "exec_int.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "exec"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

/* Longest wait in poll(): how often stop, timeout and deadline are checked at least. */
#define POLL_MAX_MS 100
/* Bytes read from a pipe at a time. */
#define READ_CHUNK 16384
/* Room for a progress line's "stats" object as compact JSON. */
#define STATS_MAX 4096
/* Bytes of a line shown by the default (no callback) logging. */
#define LOG_LINE_MAX 2000

enum kill_reason { KILL_NONE = 0, KILL_STOP, KILL_TIMEOUT, KILL_DEADLINE, KILL_MEMORY };

/* One of the command's output pipes, split into lines. */
struct stream {
	int fd;	       /* -1 after EOF */
	bool is_err;   /* stderr (else stdout) */
	bool skipping; /* the current line was cut: drop bytes up to the next newline */
	size_t len;    /* bytes of the current line in buf */
	char *buf;     /* LK_EXEC_LINE_MAX + 1 bytes */
};

/* The state of one lk_exec_run call. */
struct run {
	const struct lk_exec_opts *o;
	struct lk_exec_result *r;
	pid_t pid; /* also the process group */
	struct stream out, err;
	char *stats_buf; /* STATS_MAX bytes for lk_exec_parse_progress */
	int64_t timeout_at_ms, grace_ms;
	enum kill_reason reason; /* why the group was signalled, KILL_NONE while not */
	int64_t sigkill_at_ms;	 /* when SIGTERM turns into SIGKILL (reason set) */
	bool sigkilled;		 /* SIGKILL sent to the group */
	bool exited;		 /* the main process has ended (not reaped yet) */
	bool lost; /* someone else reaped it: its pid may be reused, never signal it again */
	int64_t exited_ms;
	int64_t mem_next_ms; /* next memory sample */
};

static void deliver_text(struct run *x, const struct stream *s, const char *line)
{
	const struct lk_exec_opts *o = x->o;

	if (s->is_err) {
		if (o->on_stderr)
			o->on_stderr(o->arg, line);
		else
			lk_log_info("stderr: %.*s", LOG_LINE_MAX, line);
	} else if (o->on_stdout_text) {
		o->on_stdout_text(o->arg, line);
	} else {
		lk_log_info("stdout: %.*s", LOG_LINE_MAX, line);
	}
}

static void deliver_progress(struct run *x, const struct lk_exec_progress *p)
{
	x->r->progress_lines++;
	if (x->o->on_progress)
		x->o->on_progress(x->o->arg, p);
	else
		lk_log_debug("progress=%.1f stage=%s processed=%lld total=%lld", p->progress,
			     p->stage, (long long)p->processed, (long long)p->total);
}

/* Hands the buffered line to its consumer and empties the buffer. */
static void line_done(struct run *x, struct stream *s)
{
	struct lk_exec_progress p;

	if (s->len > 0 && s->buf[s->len - 1] == '\r')
		s->len--;
	s->buf[s->len] = '\0';
	if (s->is_err) {
		x->r->lines_stderr++;
		deliver_text(x, s, s->buf);
	} else {
		x->r->lines_stdout++;
		if (lk_exec_parse_progress(s->buf, s->len, &p, x->stats_buf, STATS_MAX) == 1)
			deliver_progress(x, &p);
		else
			deliver_text(x, s, s->buf);
	}
	s->len = 0;
}

/* Splits n bytes into lines; a line that reaches LK_EXEC_LINE_MAX is delivered cut and
 * the rest of it dropped, so memory stays bounded whatever the command writes. */
static void stream_feed(struct run *x, struct stream *s, const char *p, size_t n)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t piece = nl ? (size_t)(nl - p) : n;

		if (!s->skipping) {
			size_t room = LK_EXEC_LINE_MAX - s->len;
			size_t take = piece < room ? piece : room;

			memcpy(s->buf + s->len, p, take);
			s->len += take;
			if (piece > room) {
				line_done(x, s);
				s->skipping = true;
			}
		}
		if (!nl)
			return;
		if (!s->skipping)
			line_done(x, s);
		s->skipping = false;
		p = nl + 1;
		n -= piece + 1;
	}
}

/* Reads what one pipe has; at EOF (or a read error) delivers the last partial line. */
static void stream_read(struct run *x, struct stream *s)
{
	char chunk[READ_CHUNK];
	ssize_t n = read(s->fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		stream_feed(x, s, chunk, (size_t)n);
		return;
	}
	if (n < 0)
		lk_log_warn("cannot read the command's %s: %s", s->is_err ? "stderr" : "stdout",
			    strerror(errno));
	if (s->len > 0 && !s->skipping)
		line_done(x, s);
	(void)close(s->fd);
	s->fd = -1;
}

/* Waits up to ms for output and reads it; sleeps when both pipes are closed. */
static void wait_io(struct run *x, int ms)
{
	struct pollfd pfd[2];
	struct stream *which[2];
	nfds_t n = 0;

	if (x->out.fd >= 0) {
		pfd[n] = (struct pollfd){.fd = x->out.fd, .events = POLLIN};
		which[n++] = &x->out;
	}
	if (x->err.fd >= 0) {
		pfd[n] = (struct pollfd){.fd = x->err.fd, .events = POLLIN};
		which[n++] = &x->err;
	}
	if (poll(n ? pfd : NULL, n, ms) <= 0)
		return; /* timeout or EINTR: the caller re-checks its clocks */
	for (nfds_t i = 0; i < n; i++)
		if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
			stream_read(x, which[i]);
}

/* Milliseconds left before the deadline (CLOCK_BOOTTIME) by which the group must be dead;
 * INT64_MAX when there is none. Another thread may move it: read at every turn. */
static int64_t deadline_left(const struct run *x)
{
	int64_t d = x->o->deadline_boot_ms
			    ? __atomic_load_n(x->o->deadline_boot_ms, __ATOMIC_ACQUIRE)
			    : 0;

	return d > 0 ? d - lk_boot_ms() : INT64_MAX;
}

/* Starts ending the group for `why`: SIGTERM now and SIGKILL after the grace, or
 * SIGKILL at once for memory and the deadline. The first reason is the one reported. */
static void begin_kill(struct run *x, enum kill_reason why, int64_t now)
{
	if (x->reason != KILL_NONE)
		return;
	x->reason = why;
	if (why == KILL_MEMORY || why == KILL_DEADLINE) {
		lk_exec_signal_group(x->pid, SIGKILL);
		x->sigkilled = true;
		return;
	}
	lk_exec_signal_group(x->pid, SIGTERM);
	x->sigkill_at_ms = now + x->grace_ms;
}

/* Samples the group's memory when due; true when it is over memory_max. */
static bool memory_over(struct run *x, int64_t now)
{
	int64_t rss;

	if (x->o->memory_max <= 0 || now < x->mem_next_ms)
		return false;
	x->mem_next_ms = now + LK_EXEC_MEM_SAMPLE_MS;
	rss = lk_exec_group_rss(x->pid);
	if (rss < 0) {
		lk_log_warn("cannot read /proc: memory_max is not enforced for pid %d",
			    (int)x->pid);
		x->mem_next_ms = INT64_MAX;
		return false;
	}
	if (rss > x->r->group_rss_bytes)
		x->r->group_rss_bytes = rss;
	return rss > x->o->memory_max;
}

/* The limits, checked at every turn of the loop while the main process runs. */
static void check_limits(struct run *x, int64_t now)
{
	const struct lk_exec_opts *o = x->o;
	bool past_deadline = deadline_left(x) <= 0;

	if (x->reason != KILL_NONE) {
		if (!x->sigkilled && (now >= x->sigkill_at_ms || past_deadline)) {
			/* the deadline cut the grace short: that is what ended the run */
			if (now < x->sigkill_at_ms)
				x->reason = KILL_DEADLINE;
			lk_exec_signal_group(x->pid, SIGKILL);
			x->sigkilled = true;
		}
		return;
	}
	if (past_deadline)
		begin_kill(x, KILL_DEADLINE, now);
	else if (lk_flag(o->stop))
		begin_kill(x, KILL_STOP, now);
	else if (o->timeout_ms > 0 && now >= x->timeout_at_ms)
		begin_kill(x, KILL_TIMEOUT, now);
	else if (memory_over(x, now))
		begin_kill(x, KILL_MEMORY, now);
}

/* Notices the main process's end without reaping it: while it is a zombie its pid (our
 * process group id) cannot be reused, so signalling the group stays safe. */
static void check_exit(struct run *x, int64_t now)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)x->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
		if (errno == EINTR)
			return;
		lk_log_warn("cannot wait for pid %d: %s", (int)x->pid, strerror(errno));
		x->lost = true;
	} else if (si.si_pid == 0) {
		return; /* still running */
	}
	x->exited = true;
	x->exited_ms = now;
}

/* How long the loop may wait before its next check: POLL_MAX_MS, or less to be on time
 * for a pending SIGKILL or the deadline. */
static int next_wait_ms(const struct run *x, int64_t now)
{
	int64_t ms = POLL_MAX_MS, left;

	if (x->sigkilled)
		return POLL_MAX_MS; /* nothing left to send: wait for the end */
	left = deadline_left(x);
	if (x->reason != KILL_NONE && x->sigkill_at_ms - now < ms)
		ms = x->sigkill_at_ms - now;
	if (left < ms)
		ms = left;
	return ms > 0 ? (int)ms : 0;
}

/* Runs until the main process has ended and its output is read (or the drain time or the
 * deadline is over), then kills what is left of the group. */
static void supervise(struct run *x)
{
	for (;;) {
		int64_t now = lk_mono_ms();

		if (!x->exited) {
			check_limits(x, now);
			check_exit(x, now);
		}
		if (x->exited && x->out.fd < 0 && x->err.fd < 0)
			break;
		if (x->exited &&
		    (now - x->exited_ms >= LK_EXEC_DRAIN_MS || deadline_left(x) <= 0)) {
			lk_log_debug(
				"pid %d ended but its group still holds its output; killing it",
				(int)x->pid);
			break;
		}
		wait_io(x, next_wait_ms(x, now));
	}
	/* The run owns its group: background children it left behind go with it. */
	if (!x->lost)
		lk_exec_signal_group(x->pid, SIGKILL);
}

/* Reaps the main process and fills exit_code, term_signal, max_rss_bytes. */
static void reap(struct run *x)
{
	struct rusage ru;
	int status = 0;
	pid_t got;

	if (x->lost) {
		lk_exec_forget(x->pid);
		return;
	}
	memset(&ru, 0, sizeof(ru));
	do
		got = wait4(x->pid, &status, 0, &ru);
	while (got < 0 && errno == EINTR);
	lk_exec_forget(x->pid);
	if (got != x->pid)
		return; /* reaped by someone else: the exit status is lost (see exec.h) */
	x->r->max_rss_bytes = (int64_t)ru.ru_maxrss * 1024;
	if (WIFEXITED(status)) {
		x->r->exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		x->r->term_signal = WTERMSIG(status);
	}
}

/* "412MiB", "1.5GiB", "900KiB" for messages. */
static void format_size(int64_t bytes, char *out, size_t size)
{
	if (bytes >= (int64_t)1 << 30)
		(void)snprintf(out, size, "%.1fGiB", (double)bytes / (double)(1 << 30));
	else if (bytes >= (int64_t)1 << 20)
		(void)snprintf(out, size, "%lldMiB", (long long)(bytes >> 20));
	else
		(void)snprintf(out, size, "%lldKiB", (long long)(bytes >> 10));
}

/* The message for a command killed by a signal nobody here sent (or sent with SIGTERM
 * and not obeyed: those carry their reason instead). */
static int signal_error(const struct run *x, struct lk_err *err)
{
	int sig = x->r->term_signal;
	const char *abbrev = sigabbrev_np(sig);
	bool oom = sig == SIGKILL ||
		   (x->o->address_space_max > 0 && (sig == SIGSEGV || sig == SIGABRT));

	return lk_err_set(err, LK_ERR_IO, "killed by signal %d (SIG%s)%s", sig,
			  abbrev ? abbrev : "?", oom ? "; out of memory?" : "");
}

/* Says how the command ended: 0 for a clean exit 0, else -1 with err (see exec.h). */
static int judge(const struct run *x, struct lk_err *err)
{
	const struct lk_exec_result *r = x->r;
	char a[32], b[32];

	switch (x->reason) {
	case KILL_STOP:
		return lk_err_set(err, LK_ERR_CANCELLED, "cancelled");
	case KILL_TIMEOUT:
		lk_exec_format_duration(x->o->timeout_ms, a, sizeof(a));
		return lk_err_set(err, LK_ERR_IO, "killed after its timeout of %s", a);
	case KILL_DEADLINE:
		return lk_err_set(err, LK_ERR_IO, "killed at its deadline");
	case KILL_MEMORY:
		format_size(r->group_rss_bytes, a, sizeof(a));
		format_size(x->o->memory_max, b, sizeof(b));
		return lk_err_set(err, LK_ERR_IO, "killed for using %s, over its memory_max of %s",
				  a, b);
	case KILL_NONE:
		break;
	}
	if (r->term_signal != 0)
		return signal_error(x, err);
	if (r->exit_code < 0)
		return lk_err_set(err, LK_ERR_IO, "ended with an unknown status");
	if (r->exit_code != 0)
		return lk_err_set(err, LK_ERR_IO, "exited with status %d", r->exit_code);
	return 0;
}

static void stream_init(struct stream *s, int fd, bool is_err)
{
	s->fd = fd;
	s->is_err = is_err;
	s->skipping = false;
	s->len = 0;
	s->buf = lk_xmalloc(LK_EXEC_LINE_MAX + 1);
}

static void stream_release(struct stream *s)
{
	if (s->fd >= 0)
		(void)close(s->fd);
	s->fd = -1;
	free(s->buf);
	s->buf = NULL;
}

int lk_exec_run(const struct lk_exec_opts *o, struct lk_exec_result *r, struct lk_err *err)
{
	struct lk_exec_child c;
	struct run x;
	int64_t start = lk_mono_ms();

	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
	if (!o->argv || !o->argv[0] || !o->argv[0][0])
		return lk_err_set(err, LK_ERR_INTERNAL, "exec: no command given");
	if (lk_flag(o->stop)) {
		r->cancelled = true;
		return lk_err_set(err, LK_ERR_CANCELLED, "cancelled");
	}
	if (lk_exec_spawn(o, &c, err) < 0) {
		r->spawn_failed = true;
		r->elapsed_ms = lk_mono_ms() - start;
		return -1;
	}
	memset(&x, 0, sizeof(x));
	x.o = o;
	x.r = r;
	x.pid = c.pid;
	stream_init(&x.out, c.out_fd, false);
	stream_init(&x.err, c.err_fd, true);
	x.stats_buf = lk_xmalloc(STATS_MAX);
	x.timeout_at_ms = start + o->timeout_ms;
	x.grace_ms = o->kill_grace_ms > 0 ? o->kill_grace_ms : LK_EXEC_KILL_GRACE_MS;
	supervise(&x);
	reap(&x);
	r->elapsed_ms = x.exited_ms - start;
	r->cancelled = x.reason == KILL_STOP;
	r->timed_out = x.reason == KILL_TIMEOUT;
	r->deadline_hit = x.reason == KILL_DEADLINE;
	r->memory_exceeded = x.reason == KILL_MEMORY;
	stream_release(&x.out);
	stream_release(&x.err);
	free(x.stats_buf);
	return judge(&x, err);
}
