/*
 * exec_proc.c - the process side of an exec job: find the command in PATH, build its
 * environment, fork and exec it in its own process group, signal that group and measure
 * its memory.
 */
#define _GNU_SOURCE /* pipe2, close_range */
#include "exec_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "exec"
#include "core/buf.h"
#include "core/log.h"

extern char **environ;

/* PATH when the command's environment has none (glibc's execvp default, plus local). */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* Highest fd the child closes one by one on kernels without close_range (before 5.9). */
#define CLOSE_LOOP_MAX 65536

/* Where the child failed, reported through the status pipe. */
enum child_stage { STAGE_SETUP = 1, STAGE_CHDIR, STAGE_EXEC };

struct child_report {
	int stage;
	int errnum;
};

/* Everything the child needs, built before fork: the child only reads it. */
struct spawn {
	const char *path; /* what execve gets: argv[0], or path_owned */
	char *path_owned; /* argv[0] resolved in PATH */
	char **envp;	  /* NULL-terminated; pointers into environ (inherited names only),
			     opts->env_extra or vars */
	char *vars[2];	  /* owned "LOCKSTEP_RUN_ID=...", "LOCKSTEP_FENCING_TOKEN=..." */
	char *const *argv;
	const char *cwd;
	int null_fd;	    /* /dev/null, the child's stdin */
	int out[2], err[2]; /* the command's stdout and stderr pipes */
	int status[2];	    /* O_CLOEXEC: EOF means execve succeeded, a report means it failed */
	int close_max;	    /* bound for the close loop fallback */
	struct rlimit as;   /* RLIMIT_AS to set when set_as */
	bool set_as;
};

/* Length of the NAME in "NAME=VALUE". */
static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* True when kv's name is the name of one of list[from..n). */
static bool name_in(const char *kv, char *const *list, size_t from, size_t n)
{
	size_t len = name_len(kv);

	for (size_t i = from; i < n; i++)
		if (name_len(list[i]) == len && memcmp(kv, list[i], len) == 0)
			return true;
	return false;
}

static char *make_var(const char *name, const char *value)
{
	struct lk_buf b = LK_BUF_INIT;

	lk_buf_addf(&b, "%s=%s", name, value);
	return lk_buf_detach(&b, NULL);
}

/* What the command inherits from lockstep's environment, nothing else: no token, no
 * password, nothing a ${VAR} in the config read (docs/exec-jobs.md, "Environment"). */
static const char *const inherited[] = {"PATH", "HOME", "LANG", "LC_ALL", "TZ"};

static bool inherit(const char *kv)
{
	size_t len = name_len(kv);

	if (!strchr(kv, '='))
		return false;
	for (size_t i = 0; i < sizeof(inherited) / sizeof(*inherited); i++)
		if (strlen(inherited[i]) == len && memcmp(kv, inherited[i], len) == 0)
			return true;
	return false;
}

/* The inherited names (when set) minus overridden ones, then run id, token and env_extra
 * (a later one of the same name wins). */
static void build_env(struct spawn *s, const struct lk_exec_opts *o)
{
	size_t nenv = 0, nextra = 0, nadd = 0, k = 0;
	char **adds;

	while (environ && environ[nenv])
		nenv++;
	while (o->env_extra && o->env_extra[nextra])
		nextra++;
	adds = lk_xcalloc(nextra + 3, sizeof(*adds));
	if (o->run_id)
		adds[nadd++] = s->vars[0] = make_var("LOCKSTEP_RUN_ID", o->run_id);
	if (o->fencing_token)
		adds[nadd++] = s->vars[1] = make_var("LOCKSTEP_FENCING_TOKEN", o->fencing_token);
	for (size_t i = 0; i < nextra; i++)
		if (strchr(o->env_extra[i], '=') && o->env_extra[i][0] != '=')
			adds[nadd++] = o->env_extra[i];
	s->envp = lk_xcalloc(nenv + nadd + 1, sizeof(*s->envp));
	for (size_t i = 0; i < nenv; i++)
		if (inherit(environ[i]) && !name_in(environ[i], adds, 0, nadd))
			s->envp[k++] = environ[i];
	for (size_t i = 0; i < nadd; i++)
		if (!name_in(adds[i], adds, i + 1, nadd))
			s->envp[k++] = adds[i];
	free(adds);
}

static const char *env_get(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; *envp; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

static bool is_executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *lk_exec_which(const char *cmd, const char *path, const char *cwd)
{
	struct lk_buf cand = LK_BUF_INIT, check = LK_BUF_INIT;
	char *found = NULL;

	for (const char *p = path ? path : DEFAULT_PATH; !found; p++) {
		const char *end = strchrnul(p, ':');

		lk_buf_reset(&cand);
		lk_buf_reset(&check);
		if (end == p)
			lk_buf_addch(&cand, '.');
		lk_buf_add(&cand, p, (size_t)(end - p));
		lk_buf_addf(&cand, "/%s", cmd);
		if (cand.buf[0] != '/' && cwd)
			lk_buf_addf(&check, "%s/", cwd);
		lk_buf_adds(&check, cand.buf);
		if (is_executable(check.buf))
			found = lk_buf_detach(&cand, NULL);
		if (*end == '\0')
			break;
		p = end;
	}
	lk_buf_release(&cand);
	lk_buf_release(&check);
	return found;
}

/* Sets s->path: argv[0] itself when it has a slash, else its first match in PATH. */
static int resolve(struct spawn *s, const struct lk_exec_opts *o, struct lk_err *err)
{
	const char *cmd = o->argv[0];

	s->path = cmd;
	if (strchr(cmd, '/'))
		return 0;
	s->path = s->path_owned = lk_exec_which(cmd, env_get(s->envp, "PATH"), o->cwd);
	if (!s->path_owned)
		return lk_err_set(err, LK_ERR_NOTFOUND, "command '%s' not found in PATH", cmd);
	return 0;
}

/* Moves fd above stdio, so the child's dup2 onto 0-2 cannot clobber it. */
static int lift_fd(int *fd)
{
	int nfd;

	if (*fd > STDERR_FILENO)
		return 0;
	nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	if (nfd < 0)
		return -1;
	(void)close(*fd);
	*fd = nfd;
	return 0;
}

/* Opens /dev/null and the three pipes, all O_CLOEXEC so no other thread's child keeps
 * them open. */
static int open_fds(struct spawn *s, struct lk_err *err)
{
	s->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (s->null_fd < 0 || pipe2(s->out, O_CLOEXEC) < 0 || pipe2(s->err, O_CLOEXEC) < 0 ||
	    pipe2(s->status, O_CLOEXEC) < 0)
		return lk_err_set(err, LK_ERR_IO, "cannot create pipes: %s", strerror(errno));
	if (lift_fd(&s->null_fd) < 0 || lift_fd(&s->out[1]) < 0 || lift_fd(&s->err[1]) < 0 ||
	    lift_fd(&s->status[1]) < 0)
		return lk_err_set(err, LK_ERR_IO, "cannot move pipes: %s", strerror(errno));
	return 0;
}

/* Limits read before fork: the close loop's bound and RLIMIT_AS within the hard limit. */
static void read_limits(struct spawn *s, const struct lk_exec_opts *o)
{
	struct rlimit rl;

	s->close_max = CLOSE_LOOP_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < CLOSE_LOOP_MAX)
		s->close_max = (int)rl.rlim_cur;
	if (o->address_space_max <= 0 || getrlimit(RLIMIT_AS, &s->as) != 0)
		return;
	s->set_as = true;
	if (s->as.rlim_max == RLIM_INFINITY || (rlim_t)o->address_space_max < s->as.rlim_max)
		s->as.rlim_max = (rlim_t)o->address_space_max;
	s->as.rlim_cur = s->as.rlim_max;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		(void)close(*fd);
	*fd = -1;
}

static void spawn_release(struct spawn *s)
{
	close_fd(&s->null_fd);
	for (int i = 0; i < 2; i++) {
		close_fd(&s->out[i]);
		close_fd(&s->err[i]);
		close_fd(&s->status[i]);
	}
	free(s->envp);
	free(s->vars[0]);
	free(s->vars[1]);
	free(s->path_owned);
}

/* In the child: report where and why we failed, then exit. Async-signal-safe. */
static _Noreturn void child_fail(int fd, int stage)
{
	struct child_report rep = {stage, errno};
	ssize_t n = write(fd, &rep, sizeof(rep));

	(void)n;
	_exit(127);
}

/* In the child: close every fd >= 3 but keep (the status pipe, closed by execve). */
static void close_others(int keep, int max)
{
	int rc = 0;

	if (keep > 3)
		rc = close_range(3, (unsigned)keep - 1, 0);
	if (rc == 0 && close_range((unsigned)keep + 1, ~0U, 0) == 0)
		return;
	for (int fd = 3; fd < max; fd++)
		if (fd != keep)
			(void)close(fd);
}

/*
 * In the child, between fork and execve: only async-signal-safe calls (the parent is
 * multi-threaded; another thread may have held malloc's lock at fork). A new process
 * group, default signal dispositions and an empty mask (the daemon blocks signals in
 * its threads and ignores SIGPIPE; SIG_IGN survives execve), stdio, no other fds.
 */
static _Noreturn void child_run(const struct spawn *s)
{
	struct sigaction dfl;
	sigset_t none;

	if (setpgid(0, 0) < 0)
		child_fail(s->status[1], STAGE_SETUP);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	(void)sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &dfl, NULL); /* EINVAL for KILL, STOP and libc's own */
	(void)sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(s->null_fd, STDIN_FILENO) < 0 || dup2(s->out[1], STDOUT_FILENO) < 0 ||
	    dup2(s->err[1], STDERR_FILENO) < 0)
		child_fail(s->status[1], STAGE_SETUP);
	close_others(s->status[1], s->close_max);
	if (s->set_as && setrlimit(RLIMIT_AS, &s->as) < 0)
		child_fail(s->status[1], STAGE_SETUP);
	if (s->cwd && chdir(s->cwd) < 0)
		child_fail(s->status[1], STAGE_CHDIR);
	execve(s->path, s->argv, s->envp);
	child_fail(s->status[1], STAGE_EXEC);
}

/* In the parent: waits for the child's exec (status pipe EOF) or its failure report. */
static int await_exec(struct spawn *s, pid_t pid, struct lk_err *err)
{
	struct child_report rep;
	ssize_t n;

	do
		n = read(s->status[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(rep))
		return 0; /* EOF: execve closed the pipe */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (rep.stage == STAGE_CHDIR)
		return lk_err_set(err, LK_ERR_IO, "cannot change to directory '%s': %s", s->cwd,
				  strerror(rep.errnum));
	if (rep.stage == STAGE_EXEC)
		return lk_err_set(err, LK_ERR_IO, "cannot run '%s': %s", s->argv[0],
				  strerror(rep.errnum));
	return lk_err_set(err, LK_ERR_IO, "cannot set up the command's process: %s",
			  strerror(rep.errnum));
}

/*
 * The commands this process runs (their main processes, from fork to reap): the orphan
 * reaper of a lockstep that is PID 1 leaves them to their runs. own_mu is held across a
 * fork and the pid's entry, so the reaper never sees one of ours that is not listed yet.
 */
#define OWN_MAX 256
static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t own[OWN_MAX];
static int nown;

static void own_add(pid_t pid) /* own_mu held */
{
	if (nown < OWN_MAX)
		own[nown++] = pid;
}

void lk_exec_forget(pid_t pid)
{
	pthread_mutex_lock(&own_mu);
	for (int i = 0; i < nown; i++) {
		if (own[i] == pid) {
			own[i] = own[--nown];
			break;
		}
	}
	pthread_mutex_unlock(&own_mu);
}

static bool owned(pid_t pid) /* own_mu held */
{
	for (int i = 0; i < nown; i++) {
		if (own[i] == pid)
			return true;
	}
	return false;
}

/* Whether /proc/NAME is a zombie child of ours: its state Z and its parent us. */
static bool zombie_child(const char *name, pid_t self)
{
	char path[64], buf[512], state = 0;
	const char *p;
	int ppid = 0;
	ssize_t n;
	int fd;

	(void)snprintf(path, sizeof(path), "/proc/%s/stat", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
		return false;
	return state == 'Z' && ppid == (int)self;
}

int lk_exec_reap_orphans(void)
{
	pid_t self = getpid();
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int reaped = 0;

	if (!dir)
		return 0;
	pthread_mutex_lock(&own_mu);
	while ((e = readdir(dir)) != NULL) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid <= 0 || owned(pid) || !zombie_child(e->d_name, self))
			continue;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			reaped++;
	}
	pthread_mutex_unlock(&own_mu);
	(void)closedir(dir);
	return reaped;
}

static int fork_exec(struct spawn *s, struct lk_exec_child *c, struct lk_err *err)
{
	pid_t pid;

	pthread_mutex_lock(&own_mu);
	pid = fork();
	if (pid > 0)
		own_add(pid);
	if (pid != 0)
		pthread_mutex_unlock(&own_mu);

	if (pid < 0) {
		int e = errno;

		lk_err_set(err, LK_ERR_IO, "cannot start '%s': fork: %s", s->argv[0], strerror(e));
		err->transient = e == EAGAIN || e == ENOMEM;
		return -1;
	}
	if (pid == 0)
		child_run(s);
	/* Also from this side, so the group exists before the parent may signal it; EACCES
	 * once the child has exec'd, which is fine. */
	(void)setpgid(pid, pid);
	close_fd(&s->null_fd);
	close_fd(&s->out[1]);
	close_fd(&s->err[1]);
	close_fd(&s->status[1]);
	if (await_exec(s, pid, err) < 0) {
		lk_exec_forget(pid); /* reaped there */
		return -1;
	}
	c->pid = pid;
	c->out_fd = s->out[0];
	c->err_fd = s->err[0];
	s->out[0] = s->err[0] = -1;
	return 0;
}

int lk_exec_spawn(const struct lk_exec_opts *o, struct lk_exec_child *c, struct lk_err *err)
{
	struct spawn s = {.null_fd = -1,
			  .out = {-1, -1},
			  .err = {-1, -1},
			  .status = {-1, -1},
			  .argv = o->argv,
			  .cwd = o->cwd};
	int rc = -1;

	c->pid = -1;
	c->out_fd = c->err_fd = -1;
	build_env(&s, o);
	if (resolve(&s, o, err) < 0 || open_fds(&s, err) < 0)
		goto out;
	read_limits(&s, o);
	rc = fork_exec(&s, c, err);
out:
	spawn_release(&s);
	return rc;
}

void lk_exec_signal_group(pid_t pgid, int sig)
{
	if (pgid > 0 && kill(-pgid, sig) < 0 && errno != ESRCH)
		lk_log_warn("cannot signal process group %d: %s", (int)pgid, strerror(errno));
}

/* The RSS in pages of process `pid` (a /proc entry name) when its group is pgid, else 0. */
static int64_t proc_rss_in_group(const char *pid, pid_t pgid)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd;

	(void)snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* gone meanwhile */
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "pid (comm) state ppid pgrp ... rss(24th)": comm may hold spaces and parentheses. */
	p = strrchr(buf, ')');
	for (int field = 3; p && field <= 24; field++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
		if (field == 5 && strtoll(p, NULL, 10) != (long long)pgid)
			return 0;
		if (field == 24)
			return strtoll(p, NULL, 10);
	}
	return 0;
}

int64_t lk_exec_group_rss(pid_t pgid)
{
	long page = sysconf(_SC_PAGESIZE);
	int64_t pages = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
			pages += proc_rss_in_group(de->d_name, pgid);
	(void)closedir(d);
	return pages * (page > 0 ? page : 4096);
}
