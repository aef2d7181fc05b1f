/*
 * test_exec.c - the exec job runner against real child processes (/bin/sh scripts):
 * exit codes, progress lines, stderr, environment, timeout and stop killing the whole
 * process group, the memory watchdog, spawn failures, bounded lines; and the progress
 * line parser alone on edge inputs.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "core/buf.h"
#include "core/units.h"
#include "sched/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PROG 16
#define MIB ((int64_t)1 << 20)

/* What the callbacks saw. */
struct got {
	int nprog;
	struct lk_exec_progress prog[MAX_PROG];
	char stats[MAX_PROG][256];
	struct lk_buf out, err; /* lines, each followed by '\n' */
	int nout, nerr;
	size_t longest_out;
	volatile bool *stop_on_progress; /* set at the first progress line */
	int64_t *deadline;		 /* moved to 300 ms from now at each progress line */
};

static void on_progress(void *arg, const struct lk_exec_progress *p)
{
	struct got *g = arg;

	if (g->stop_on_progress)
		*g->stop_on_progress = true;
	if (g->deadline)
		__atomic_store_n(g->deadline, lk_boot_ms() + 300, __ATOMIC_RELEASE);
	if (g->nprog >= MAX_PROG)
		return;
	g->prog[g->nprog] = *p;
	g->prog[g->nprog].stats_json = NULL;
	if (p->stats_json) {
		(void)snprintf(g->stats[g->nprog], sizeof(g->stats[0]), "%s", p->stats_json);
		g->prog[g->nprog].stats_json = g->stats[g->nprog];
	}
	g->nprog++;
}

static void on_stdout_text(void *arg, const char *line)
{
	struct got *g = arg;
	size_t len = strlen(line);

	if (len > g->longest_out)
		g->longest_out = len;
	g->nout++;
	lk_buf_adds(&g->out, len > 200 ? "(long)" : line);
	lk_buf_addch(&g->out, '\n');
}

static void on_stderr(void *arg, const char *line)
{
	struct got *g = arg;

	g->nerr++;
	lk_buf_adds(&g->err, line);
	lk_buf_addch(&g->err, '\n');
}

static void got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	lk_buf_init(&g->out);
	lk_buf_init(&g->err);
}

static void got_release(struct got *g)
{
	lk_buf_release(&g->out);
	lk_buf_release(&g->err);
}

/* Options running argv with the collecting callbacks. */
static struct lk_exec_opts opts_for(char **argv, struct got *g)
{
	struct lk_exec_opts o;

	memset(&o, 0, sizeof(o));
	o.argv = argv;
	o.on_progress = on_progress;
	o.on_stdout_text = on_stdout_text;
	o.on_stderr = on_stderr;
	o.arg = g;
	return o;
}

/* Options running `/bin/sh -c script`; argv has room for 4 pointers. */
static struct lk_exec_opts sh_opts(char **argv, const char *script, struct got *g)
{
	argv[0] = (char *)"/bin/sh";
	argv[1] = (char *)"-c";
	argv[2] = (char *)script;
	argv[3] = NULL;
	return opts_for(argv, g);
}

static int run_sh(const char *script, struct got *g, struct lk_exec_result *r, struct lk_err *e)
{
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, script, g);

	return lk_exec_run(&o, r, e);
}

/* True once pid is gone or a zombie (an orphan whose reaper is slow still counts as
 * dead), waiting up to 2 s. */
static bool pid_dies(pid_t pid)
{
	for (int i = 0; i < 200; i++) {
		char path[64], buf[256];
		FILE *f;

		if (kill(pid, 0) < 0 && errno == ESRCH)
			return true;
		(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		f = fopen(path, "r");
		if (f) {
			const char *p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;

			(void)fclose(f);
			if (p && p[1] == ' ' && p[2] == 'Z')
				return true;
		}
		lk_sleep_ms(10, NULL);
	}
	return false;
}

static pid_t read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = -1;

	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = -1;
		(void)fclose(f);
	}
	return (pid_t)pid;
}

static void test_exec_succeeds_on_exit_0(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;

	(void)state;
	got_init(&g);
	assert_int_equal(run_sh("echo hello; echo world", &g, &r, &e), 0);
	assert_int_equal(r.exit_code, 0);
	assert_int_equal(r.term_signal, 0);
	assert_false(r.timed_out || r.cancelled || r.spawn_failed || r.memory_exceeded);
	assert_int_equal(r.lines_stdout, 2);
	assert_int_equal(r.lines_stderr, 0);
	assert_string_equal(g.out.buf, "hello\nworld\n");
	assert_true(r.elapsed_ms >= 0 && r.elapsed_ms < 5000);
	assert_true(r.max_rss_bytes > 0);
	got_release(&g);
}

static void test_exec_fails_with_its_exit_status(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;

	(void)state;
	got_init(&g);
	assert_int_equal(run_sh("exit 3", &g, &r, &e), -1);
	assert_int_equal(r.exit_code, 3);
	assert_int_equal(e.code, LK_ERR_IO);
	assert_false(e.transient);
	assert_string_equal(e.msg, "exited with status 3");
	got_release(&g);
}

static void test_exec_progress_lines_arrive_in_order(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	const char *script =
		"echo '{\"progress\": 10, \"stage\": \"articles\", \"stats\": {\"processed\": 100, "
		"\"total\": 1000}}'\n"
		"echo 'working'\n"
		"printf '{\"progress\": 45.5, \"stage\": \"articles\", \"stats\": {\"processed\": "
		"455, \"total\": 1000}}\\r\\n'\n"
		"echo '  {\"stage\": \"images\"}  '\n"
		"printf '{\"progress\": 100}'\n"; /* last line without a newline */

	(void)state;
	got_init(&g);
	assert_int_equal(run_sh(script, &g, &r, &e), 0);
	assert_int_equal(g.nprog, 4);
	assert_int_equal(r.progress_lines, 4);
	assert_int_equal(r.lines_stdout, 5);
	assert_true(g.prog[0].progress == 10);
	assert_string_equal(g.prog[0].stage, "articles");
	assert_int_equal(g.prog[0].processed, 100);
	assert_int_equal(g.prog[0].total, 1000);
	assert_string_equal(g.prog[0].stats_json, "{\"processed\":100,\"total\":1000}");
	assert_true(g.prog[1].progress == 45.5);
	assert_int_equal(g.prog[1].processed, 455);
	assert_true(g.prog[2].progress == -1);
	assert_string_equal(g.prog[2].stage, "images");
	assert_int_equal(g.prog[2].processed, -1);
	assert_null(g.prog[2].stats_json);
	assert_true(g.prog[3].progress == 100);
	assert_string_equal(g.out.buf, "working\n");
	got_release(&g);
}

static void test_exec_non_progress_lines_are_text(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	const char *script = "echo plain; echo '{\"progress\": '; echo '[1, 2]'; "
			     "echo '{\"level\": \"info\", \"msg\": \"x\"}'; echo "
			     "'{\"progress\": 1, \"progress\": 2}'; echo; echo 42";

	(void)state;
	got_init(&g);
	assert_int_equal(run_sh(script, &g, &r, &e), 0);
	assert_int_equal(g.nprog, 0);
	assert_string_equal(g.out.buf,
			    "plain\n{\"progress\": \n[1, 2]\n{\"level\": \"info\", "
			    "\"msg\": \"x\"}\n{\"progress\": 1, \"progress\": 2}\n\n42\n");
	got_release(&g);
}

static void test_exec_stderr_lines_are_delivered(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;

	(void)state;
	got_init(&g);
	assert_int_equal(
		run_sh("echo oops >&2; echo out; printf 'last words' >&2; exit 1", &g, &r, &e), -1);
	assert_int_equal(r.lines_stderr, 2);
	assert_string_equal(g.err.buf, "oops\nlast words\n");
	assert_string_equal(g.out.buf, "out\n");
	got_release(&g);
}

static void test_exec_environment_carries_run_id_and_token(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	char *extra[] = {(char *)"LK_TEST_EXTRA=bar", (char *)"LK_TEST_OVERRIDE=new", NULL};
	struct lk_exec_opts o =
		sh_opts(argv,
			"printf '{\"stage\":\"%s\"}\\n' \"$LOCKSTEP_RUN_ID\"; "
			"echo \"$LOCKSTEP_FENCING_TOKEN $LK_TEST_EXTRA "
			"$LK_TEST_OVERRIDE\" >&2; env | grep -c '^LK_TEST_OVERRIDE='",
			&g);

	(void)state;
	got_init(&g);
	assert_int_equal(setenv("LK_TEST_OVERRIDE", "old", 1), 0);
	o.run_id = "0190a2b4-run";
	o.fencing_token = "42";
	o.env_extra = extra;
	assert_int_equal(lk_exec_run(&o, &r, &e), 0);
	assert_int_equal(g.nprog, 1);
	assert_string_equal(g.prog[0].stage, "0190a2b4-run");
	assert_string_equal(g.err.buf, "42 bar new\n");
	assert_string_equal(g.out.buf, "1\n"); /* overridden, not duplicated */
	assert_int_equal(unsetenv("LK_TEST_OVERRIDE"), 0);
	got_release(&g);
}

static void test_exec_runs_in_cwd_with_clean_signals_and_fds(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv,
					"pwd; ls /proc/$$/fd; exec grep -E "
					"'^Sig(Blk|Ign)' /proc/self/status",
					&g);
	int leak = open("/dev/null", O_RDONLY); /* not O_CLOEXEC, like a libpq socket */
	sigset_t block, old;

	(void)state;
	got_init(&g);
	assert_true(leak >= 3);
	(void)sigemptyset(&block);
	(void)sigaddset(&block, SIGTERM);
	assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old), 0);
	assert_true(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
	o.cwd = "/tmp";
	assert_int_equal(lk_exec_run(&o, &r, &e), 0);
	assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
	(void)close(leak);
	/* Signals 32 and 33 are glibc's own (cancellation, setxid): sigaction refuses them,
	 * so a parent that ignores them (some CI runners do) passes that on; mask them out. */
	{
		unsigned long long blk = 1, ign = 1;
		char dir[64] = "", fds[64] = "";

		/* grep reads its own status after exec: the mask the command got (the shell
		 * itself blocks signals while it waits for a child, so it is not read). The
		 * shell's fds are listed by a plain child, not a pipeline: while the shell
		 * builds a pipeline it holds the pipe's two ends itself, and ls could see them. */
		assert_int_equal(sscanf(g.out.buf, "%63s %63[0-9\n]SigBlk: %llx SigIgn: %llx", dir,
					fds, &blk, &ign),
				 4);
		assert_string_equal(dir, "/tmp");
		assert_int_equal(blk & 0x7fffffffULL, 0); /* signals 1..31 */
		assert_int_equal(ign & 0x7fffffffULL, 0);
		assert_string_equal(fds, "0\n1\n2\n");
	}
	got_release(&g);
}

static void test_exec_timeout_kills_the_process_group(void **state)
{
	char pidfile[] = "/tmp/lk-exec-test-XXXXXX";
	int fd = mkstemp(pidfile);
	struct lk_buf script = LK_BUF_INIT;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o;

	(void)state;
	assert_true(fd >= 0);
	(void)close(fd);
	lk_buf_addf(&script, "sleep 30 & echo $! > %s; sleep 30; wait", pidfile);
	got_init(&g);
	o = sh_opts(argv, script.buf, &g);
	o.timeout_ms = 300;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.timed_out);
	assert_false(r.cancelled);
	assert_int_equal(r.exit_code, -1);
	assert_int_equal(r.term_signal, SIGTERM);
	assert_int_equal(e.code, LK_ERR_IO);
	assert_false(e.transient);
	assert_string_equal(e.msg, "killed after its timeout of 300ms");
	assert_true(r.elapsed_ms >= 300 && r.elapsed_ms < 3000);
	assert_true(read_pid(pidfile) > 0);
	assert_true(pid_dies(read_pid(pidfile)));
	(void)unlink(pidfile);
	lk_buf_release(&script);
	got_release(&g);
}

static void test_exec_sigkill_follows_an_ignored_sigterm(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "trap '' TERM; sleep 30", &g);

	(void)state;
	got_init(&g);
	o.timeout_ms = 200;
	o.kill_grace_ms = 300;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.timed_out);
	assert_int_equal(r.term_signal, SIGKILL);
	assert_true(r.elapsed_ms >= 500 && r.elapsed_ms < 3000);
	assert_string_equal(e.msg, "killed after its timeout of 200ms");
	got_release(&g);
}

/* The lease deadline is a hard one: SIGKILL when it passes, without a SIGTERM grace. */
static void test_exec_deadline_kills_at_once(void **state)
{
	int64_t deadline = lk_boot_ms() + 200;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "trap '' TERM; sleep 30", &g);

	(void)state;
	got_init(&g);
	o.deadline_boot_ms = &deadline;
	o.timeout_ms = 60000;
	o.kill_grace_ms = 20000;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.deadline_hit);
	assert_false(r.timed_out);
	assert_int_equal(r.term_signal, SIGKILL);
	assert_true(r.elapsed_ms >= 150 && r.elapsed_ms < 3000);
	assert_string_equal(e.msg, "killed at its deadline");
	got_release(&g);
}

/* A stop (the lease watch's SIGTERM) on a command that ignores SIGTERM: the SIGKILL comes
 * at the deadline, not at the end of a grace that would outlive the lease. */
static void test_exec_deadline_cuts_the_stop_grace(void **state)
{
	volatile bool stop = false;
	int64_t deadline = 0; /* none until the progress line sets it 300 ms ahead */
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o =
		sh_opts(argv, "trap '' TERM; echo '{\"progress\": 1}'; sleep 30 & wait; wait", &g);

	(void)state;
	got_init(&g);
	g.stop_on_progress = &stop;
	g.deadline = &deadline;
	o.stop = &stop;
	o.deadline_boot_ms = &deadline;
	o.kill_grace_ms = 20000;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.deadline_hit);
	assert_false(r.cancelled);
	assert_int_equal(r.term_signal, SIGKILL);
	assert_true(r.elapsed_ms >= 250 && r.elapsed_ms < 3000);
	assert_string_equal(e.msg, "killed at its deadline");
	got_release(&g);
}

/* A deadline that another thread keeps moving (lease renewals) is read at every turn: the
 * command lives past the first value and dies 300 ms after the last move. */
static void test_exec_deadline_moves(void **state)
{
	int64_t deadline = lk_boot_ms() + 300;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv,
					"for i in 1 2 3 4 5 6 7 8; do echo '{\"progress\": 1}';"
					" sleep 0.1; done; sleep 30",
					&g);

	(void)state;
	got_init(&g);
	g.deadline = &deadline;
	o.deadline_boot_ms = &deadline;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.deadline_hit);
	assert_int_equal(g.nprog, 8);
	assert_true(r.elapsed_ms >= 1000 && r.elapsed_ms < 5000);
	assert_string_equal(e.msg, "killed at its deadline");
	got_release(&g);
}

/* A far deadline leaves a stop its whole grace (the command exits on SIGTERM). */
static void test_exec_far_deadline_keeps_the_grace(void **state)
{
	volatile bool stop = false;
	int64_t deadline = lk_boot_ms() + 60000;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(
		argv, "trap 'sleep 0.3; exit 3' TERM; echo '{\"progress\": 1}'; sleep 30 & wait",
		&g);

	(void)state;
	got_init(&g);
	g.stop_on_progress = &stop;
	o.stop = &stop;
	o.deadline_boot_ms = &deadline;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.cancelled);
	assert_false(r.deadline_hit);
	assert_int_equal(r.exit_code, 3);
	assert_string_equal(e.msg, "cancelled");
	got_release(&g);
}

static void test_exec_stop_flag_cancels(void **state)
{
	volatile bool stop = false;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "echo '{\"progress\": 1}'; sleep 30", &g);

	(void)state;
	got_init(&g);
	g.stop_on_progress = &stop;
	o.stop = &stop;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.cancelled);
	assert_false(r.timed_out);
	assert_int_equal(e.code, LK_ERR_CANCELLED);
	assert_string_equal(e.msg, "cancelled");
	assert_true(r.elapsed_ms < 3000);
	got_release(&g);
}

static void test_exec_stop_already_set_starts_nothing(void **state)
{
	volatile bool stop = true;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "echo started", &g);

	(void)state;
	got_init(&g);
	o.stop = &stop;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.cancelled);
	assert_int_equal(e.code, LK_ERR_CANCELLED);
	assert_int_equal(g.nout, 0);
	got_release(&g);
}

struct parallel {
	const char *script;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e;
	int rc;
};

static void *parallel_run(void *arg)
{
	struct parallel *p = arg;

	p->rc = run_sh(p->script, &p->g, &p->r, &p->e);
	return NULL;
}

/* Two threads at once: each sees only its own output, and the quick one is not held up by
 * the slow one keeping an inherited copy of its pipe open. */
static void test_exec_runs_in_parallel_threads(void **state)
{
	struct parallel p[2] = {{.script = "sleep 1; echo slow"}, {.script = "echo quick"}};
	pthread_t t[2];

	(void)state;
	for (int i = 0; i < 2; i++) {
		got_init(&p[i].g);
		lk_err_clear(&p[i].e);
		assert_int_equal(pthread_create(&t[i], NULL, parallel_run, &p[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(p[i].rc, 0);
	}
	assert_string_equal(p[0].g.out.buf, "slow\n");
	assert_string_equal(p[1].g.out.buf, "quick\n");
	assert_true(p[1].r.elapsed_ms < 900);
	for (int i = 0; i < 2; i++)
		got_release(&p[i].g);
}

static void test_exec_background_child_dies_with_the_run(void **state)
{
	char pidfile[] = "/tmp/lk-exec-test-XXXXXX";
	int fd = mkstemp(pidfile);
	struct lk_buf script = LK_BUF_INIT;
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;

	(void)state;
	assert_true(fd >= 0);
	(void)close(fd);
	/* The background sleep keeps stdout open after the main process has exited. */
	lk_buf_addf(&script, "sleep 30 & echo $! > %s; echo done", pidfile);
	got_init(&g);
	assert_int_equal(run_sh(script.buf, &g, &r, &e), 0);
	assert_string_equal(g.out.buf, "done\n");
	assert_true(pid_dies(read_pid(pidfile)));
	(void)unlink(pidfile);
	lk_buf_release(&script);
	got_release(&g);
}

/*
 * The two tests below allocate with dd (coreutils, like the sh and sleep the others use):
 * its one block of bs bytes is read from /dev/zero, so every page of it is touched. In a
 * pipe to a sleep that never reads, dd then blocks in its write, holding the 400 MiB.
 */
static void test_exec_memory_max_kills_a_big_allocation(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "dd if=/dev/zero bs=400M count=1 | sleep 20", &g);

	(void)state;
	o.memory_max = 100 * MIB;
	got_init(&g);
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.memory_exceeded);
	assert_int_equal(r.term_signal, SIGKILL);
	assert_true(r.group_rss_bytes > 100 * MIB);
	assert_true(r.elapsed_ms < 10000);
	assert_non_null(strstr(e.msg, "over its memory_max of 100MiB"));
	got_release(&g);
}

static void test_exec_address_space_max_fails_a_big_allocation(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	struct lk_exec_opts o =
		sh_opts(argv, "LC_ALL=C dd if=/dev/zero of=/dev/null bs=400M count=1", &g);

	(void)state;
	o.address_space_max = 100 * MIB;
	got_init(&g);
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_false(r.memory_exceeded);
	assert_true(r.exit_code != 0);
	assert_non_null(strstr(g.err.buf, "memory exhausted"));
	got_release(&g);
}

static void test_exec_reports_spawn_failures(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *missing[] = {(char *)"lk-no-such-command-x", NULL};
	char *relative[] = {(char *)"./lk-no-such-script", NULL};
	char *argv[4];
	struct lk_exec_opts o = sh_opts(argv, "true", &g);

	(void)state;
	got_init(&g);
	o.argv = missing;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.spawn_failed);
	assert_int_equal(e.code, LK_ERR_NOTFOUND);
	assert_string_equal(e.msg, "command 'lk-no-such-command-x' not found in PATH");
	o.argv = relative;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.spawn_failed);
	assert_int_equal(e.code, LK_ERR_IO);
	assert_string_equal(e.msg, "cannot run './lk-no-such-script': No such file or directory");
	o.argv = argv;
	o.cwd = "/nonexistent-lk-dir";
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_true(r.spawn_failed);
	assert_string_equal(e.msg, "cannot change to directory '/nonexistent-lk-dir': No such "
				   "file or directory");
	got_release(&g);
}

/* Only PATH, HOME, LANG, LC_ALL and TZ are inherited; secrets in the daemon's environment
 * are not, unless env_extra names them (docs/exec-jobs.md, "Environment"). */
static void test_exec_environment_is_clean(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[4];
	char *extra[] = {(char *)"LK_TEST_PASSED=yes", NULL};
	struct lk_exec_opts o = sh_opts(
		argv,
		"env | cut -d= -f1 | grep -E "
		"'^(LOCKSTEP_TOKEN|PGPASSWORD|LK_TEST_PASSED|TZ|LC_ALL)$' | sort | paste -sd' '",
		&g);
	const char *tz = getenv("TZ");
	char *old_tz = tz ? strdup(tz) : NULL;

	(void)state;
	got_init(&g);
	assert_int_equal(setenv("LOCKSTEP_TOKEN", "secret-token", 1), 0);
	assert_int_equal(setenv("PGPASSWORD", "secret-pw", 1), 0);
	assert_int_equal(setenv("TZ", "UTC", 1), 0);
	assert_int_equal(setenv("LC_ALL", "C", 1), 0);
	o.env_extra = extra;
	assert_int_equal(lk_exec_run(&o, &r, &e), 0);
	assert_string_equal(g.out.buf, "LC_ALL LK_TEST_PASSED TZ\n");
	assert_int_equal(unsetenv("LOCKSTEP_TOKEN"), 0);
	assert_int_equal(unsetenv("PGPASSWORD"), 0);
	assert_int_equal(unsetenv("LC_ALL"), 0);
	assert_int_equal(old_tz ? setenv("TZ", old_tz, 1) : unsetenv("TZ"), 0);
	free(old_tz);
	got_release(&g);
}

static void test_exec_finds_commands_in_path(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)"echo \"$PATH\"", NULL};
	char *extra[] = {(char *)"PATH=/nonexistent-lk:/bin", NULL};
	char *nopath[] = {(char *)"PATH=/nonexistent-lk", NULL};
	struct lk_exec_opts o = opts_for(argv, &g);

	(void)state;
	got_init(&g);
	o.env_extra = extra;
	assert_int_equal(lk_exec_run(&o, &r, &e), 0);
	assert_string_equal(g.out.buf, "/nonexistent-lk:/bin\n");
	o.env_extra = nopath; /* the command's PATH is the one searched */
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_int_equal(e.code, LK_ERR_NOTFOUND);
	got_release(&g);
}

static void test_exec_huge_lines_are_cut(void **state)
{
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;

	(void)state;
	got_init(&g);
	assert_int_equal(run_sh("head -c 300000 /dev/zero | tr '\\0' x; echo; echo after; "
				"head -c 200000 /dev/zero | tr '\\0' y",
				&g, &r, &e),
			 0);
	assert_int_equal(g.nout, 3);
	assert_int_equal(g.longest_out, LK_EXEC_LINE_MAX);
	assert_string_equal(g.out.buf, "(long)\nafter\n(long)\n");
	got_release(&g);
}

static void test_exec_default_callbacks_log(void **state)
{
	char *argv[4];
	struct got g;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	struct lk_exec_opts o =
		sh_opts(argv, "echo text; echo '{\"progress\": 5}'; echo err >&2", &g);

	(void)state;
	o.on_progress = NULL;
	o.on_stdout_text = NULL;
	o.on_stderr = NULL;
	assert_int_equal(lk_exec_run(&o, &r, &e), 0);
	assert_int_equal(r.lines_stdout, 2);
	assert_int_equal(r.progress_lines, 1);
	assert_int_equal(r.lines_stderr, 1);
}

static void test_exec_rejects_an_empty_command(void **state)
{
	struct lk_exec_opts o;
	struct lk_exec_result r;
	struct lk_err e = LK_ERR_INIT;
	char *empty[] = {(char *)"", NULL};

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_int_equal(e.code, LK_ERR_INTERNAL);
	o.argv = empty;
	assert_int_equal(lk_exec_run(&o, &r, &e), -1);
	assert_int_equal(e.code, LK_ERR_INTERNAL);
}

/* ---- the parser alone ---- */

static int parse(const char *s, size_t len, struct lk_exec_progress *p)
{
	static char stats[128];

	memset(p, 0x5a, sizeof(*p));
	return lk_exec_parse_progress(s, len, p, stats, sizeof(stats));
}

static int parse_s(const char *s, struct lk_exec_progress *p)
{
	return parse(s, strlen(s), p);
}

static void is_text(const char *s, size_t len)
{
	struct lk_exec_progress p;

	if (parse(s, len, &p) != 0)
		fail_msg("taken as progress: '%.*s'", (int)len, s ? s : "");
}

#define TEXT(lit) is_text((lit), sizeof(lit) - 1)

static void test_parse_plain_text_and_non_objects(void **state)
{
	(void)state;
	is_text(NULL, 0);
	TEXT("");
	TEXT("   ");
	TEXT("hello world");
	TEXT("42");
	TEXT("\"progress\"");
	TEXT("null");
	TEXT("[{\"progress\": 1}]");
	TEXT("{}");
	TEXT("{\"level\": \"info\", \"msg\": \"x\"}");
	TEXT("{\"progress\": ");
	TEXT("{\"progress\": 1");
	TEXT("{\"progress\": 1} trailing");
	TEXT("{\"progress\": 1}{\"progress\": 2}");
	TEXT("{progress: 1}");
	TEXT("{'progress': 1}");
	TEXT("{\"progress\": 1, \"progress\": 2}"); /* duplicate keys */
	TEXT("{\"progress\": 1e400}");		    /* overflows a double */
	TEXT("{\"progress\": NaN}");
	TEXT("{\"progress\": 1}\0garbage");		/* a NUL after the object */
	TEXT("{\"stage\": \"a\0b\"}");			/* a raw NUL in a string */
	TEXT("{\"stage\": \"\xff\xfe\"}");		/* invalid UTF-8 */
	TEXT("{\"stage\": \"\xc3\"}");			/* a cut UTF-8 sequence */
	TEXT("{\"stage\": \"\xed\xa0\x80\"}");		/* an encoded surrogate */
	TEXT("\xef\xbb\xbf{\"progress\": 1}");		/* a byte-order mark */
	TEXT("{\"progress\": 1, \"stage\": \"a\nb\"}"); /* a raw newline in a string */
}

static void test_parse_reads_fields_and_tolerates_wrong_types(void **state)
{
	struct lk_exec_progress p;
	const char *odd = "{\"stats\": {\"processed\": \"450\", \"total\": -1}}";
	const char *full = "{\"progress\": 45, \"stage\": \"articles\", \"stats\": {\"processed\": "
			   "450, \"total\": 1000, \"extra\": {\"deep\": [1, 2]}}, \"other\": true}";

	(void)state;
	assert_int_equal(parse(full, strlen(full), &p), 1);
	assert_true(p.progress == 45);
	assert_string_equal(p.stage, "articles");
	assert_int_equal(p.processed, 450);
	assert_int_equal(p.total, 1000);
	assert_string_equal(p.stats_json,
			    "{\"processed\":450,\"total\":1000,\"extra\":{\"deep\":[1,2]}}");

	assert_int_equal(parse_s(" \t{\"progress\": 12.25}\t ", &p), 1);
	assert_true(p.progress == 12.25);
	assert_string_equal(p.stage, "");
	assert_int_equal(p.processed, -1);
	assert_int_equal(p.total, -1);
	assert_null(p.stats_json);

	assert_int_equal(parse_s("{\"progress\": \"45\"}", &p), 1); /* a string: unknown */
	assert_true(p.progress == -1);
	assert_int_equal(parse_s("{\"progress\": 150}", &p), 1);
	assert_true(p.progress == 100);
	assert_int_equal(parse_s("{\"progress\": -1}", &p), 1); /* "unknown" stays unknown */
	assert_true(p.progress == -1);
	assert_int_equal(parse_s("{\"progress\": 0}", &p), 1);
	assert_true(p.progress == 0);
	assert_int_equal(parse_s("{\"stage\": 7}", &p), 1);
	assert_string_equal(p.stage, "");
	assert_int_equal(parse(odd, strlen(odd), &p), 1);
	assert_int_equal(p.processed, -1);
	assert_int_equal(p.total, -1);
	assert_string_equal(p.stats_json, "{\"processed\":\"450\",\"total\":-1}");
	assert_int_equal(parse_s("{\"stats\": {\"processed\": 7.9, \"total\": 1e3}}", &p), 1);
	assert_int_equal(p.processed, 7);
	assert_int_equal(p.total, 1000);
	assert_int_equal(parse_s("{\"stats\": [1, 2]}", &p), 1);
	assert_null(p.stats_json);
	assert_int_equal(p.processed, -1);
}

static void test_parse_bounds_stage_and_stats(void **state)
{
	struct lk_exec_progress p;
	struct lk_buf b = LK_BUF_INIT;
	char small[8];

	(void)state;
	lk_buf_adds(&b, "{\"stage\": \"");
	for (int i = 0; i < 50; i++)
		lk_buf_adds(&b, "\xc3\xa9"); /* é: two bytes */
	lk_buf_adds(&b, "\"}");
	assert_int_equal(parse(b.buf, b.len, &p), 1);
	assert_int_equal(strlen(p.stage), 62); /* 31 whole characters, not 63 bytes */

	memset(&p, 0, sizeof(p));
	assert_int_equal(lk_exec_parse_progress("{\"stats\": {\"processed\": 1, \"total\": 2}}", 39,
						&p, small, sizeof(small)),
			 1);
	assert_null(p.stats_json); /* does not fit */
	assert_int_equal(p.processed, 1);
	assert_int_equal(lk_exec_parse_progress("{\"stats\": {}}", 13, &p, NULL, 0), 1);
	assert_null(p.stats_json);

	lk_buf_reset(&b);
	lk_buf_adds(&b, "{\"stats\": ");
	for (int i = 0; i < 100000; i++)
		lk_buf_addch(&b, '[');
	is_text(b.buf, b.len); /* deep nesting: refused, no crash */
	lk_buf_release(&b);
}

static void test_parse_survives_random_bytes(void **state)
{
	static const char alphabet[] = "{}[]\":,.-+eE0123456789 truefalsn\\u\"progress\"stage"
				       "\"stats\"\0\xff\xc3";
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	char line[96];
	struct lk_exec_progress p;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t len;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		len = (size_t)(x % sizeof(line));
		line[0] = '{';
		for (size_t k = 1; k < len; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			line[k] = alphabet[x % (sizeof(alphabet) - 1)];
		}
		(void)parse(line, len, &p);
	}
}

static void test_format_duration(void **state)
{
	char out[32];

	(void)state;
	lk_exec_format_duration(300, out, sizeof(out));
	assert_string_equal(out, "300ms");
	lk_exec_format_duration(1500, out, sizeof(out));
	assert_string_equal(out, "1.5s");
	lk_exec_format_duration(1250, out, sizeof(out));
	assert_string_equal(out, "1.25s");
	lk_exec_format_duration(300000, out, sizeof(out));
	assert_string_equal(out, "5m0s");
	lk_exec_format_duration(3600000, out, sizeof(out));
	assert_string_equal(out, "1h0m0s");
	lk_exec_format_duration(5430001, out, sizeof(out));
	assert_string_equal(out, "1h30m30.001s");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_succeeds_on_exit_0),
		cmocka_unit_test(test_exec_fails_with_its_exit_status),
		cmocka_unit_test(test_exec_progress_lines_arrive_in_order),
		cmocka_unit_test(test_exec_non_progress_lines_are_text),
		cmocka_unit_test(test_exec_stderr_lines_are_delivered),
		cmocka_unit_test(test_exec_environment_carries_run_id_and_token),
		cmocka_unit_test(test_exec_environment_is_clean),
		cmocka_unit_test(test_exec_runs_in_cwd_with_clean_signals_and_fds),
		cmocka_unit_test(test_exec_timeout_kills_the_process_group),
		cmocka_unit_test(test_exec_sigkill_follows_an_ignored_sigterm),
		cmocka_unit_test(test_exec_deadline_kills_at_once),
		cmocka_unit_test(test_exec_deadline_cuts_the_stop_grace),
		cmocka_unit_test(test_exec_deadline_moves),
		cmocka_unit_test(test_exec_far_deadline_keeps_the_grace),
		cmocka_unit_test(test_exec_stop_flag_cancels),
		cmocka_unit_test(test_exec_stop_already_set_starts_nothing),
		cmocka_unit_test(test_exec_runs_in_parallel_threads),
		cmocka_unit_test(test_exec_background_child_dies_with_the_run),
		cmocka_unit_test(test_exec_memory_max_kills_a_big_allocation),
		cmocka_unit_test(test_exec_address_space_max_fails_a_big_allocation),
		cmocka_unit_test(test_exec_reports_spawn_failures),
		cmocka_unit_test(test_exec_finds_commands_in_path),
		cmocka_unit_test(test_exec_huge_lines_are_cut),
		cmocka_unit_test(test_exec_default_callbacks_log),
		cmocka_unit_test(test_exec_rejects_an_empty_command),
		cmocka_unit_test(test_parse_plain_text_and_non_objects),
		cmocka_unit_test(test_parse_reads_fields_and_tolerates_wrong_types),
		cmocka_unit_test(test_parse_bounds_stage_and_stats),
		cmocka_unit_test(test_parse_survives_random_bytes),
		cmocka_unit_test(test_format_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
