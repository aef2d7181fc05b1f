/* runs.c - run records and job locks with their epochs. */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct run_params {
	char read[24], written[24], failed[24], total[24], started[24], updated[24], finished[24],
		epoch[24], progress[32];
	const char *p[15];
};

static void fill_params(struct run_params *rp, const struct lk_run *r)
{
	(void)snprintf(rp->read, sizeof(rp->read), "%lld", (long long)r->rows_read);
	(void)snprintf(rp->written, sizeof(rp->written), "%lld", (long long)r->rows_written);
	(void)snprintf(rp->failed, sizeof(rp->failed), "%lld", (long long)r->rows_failed);
	(void)snprintf(rp->total, sizeof(rp->total), "%lld", (long long)r->total_estimate);
	(void)snprintf(rp->started, sizeof(rp->started), "%lld", (long long)r->started_ms);
	(void)snprintf(rp->updated, sizeof(rp->updated), "%lld", (long long)lk_wall_ms());
	(void)snprintf(rp->finished, sizeof(rp->finished), "%lld", (long long)r->finished_ms);
	(void)snprintf(rp->epoch, sizeof(rp->epoch), "%lld", (long long)r->epoch);
	(void)snprintf(rp->progress, sizeof(rp->progress), "%.2f", r->progress);
	rp->p[0] = r->id;
	rp->p[1] = r->job;
	rp->p[2] = r->type;
	rp->p[3] = r->status;
	rp->p[4] = r->stage;
	rp->p[5] = r->progress >= 0 ? rp->progress : NULL;
	rp->p[6] = rp->read;
	rp->p[7] = rp->written;
	rp->p[8] = rp->failed;
	rp->p[9] = r->total_estimate >= 0 ? rp->total : NULL;
	rp->p[10] = rp->started;
	rp->p[11] = rp->updated;
	rp->p[12] = r->finished_ms ? rp->finished : NULL;
	rp->p[13] = r->error;
	rp->p[14] = rp->epoch;
}

int lk_store_run_insert(struct lk_store *s, const struct lk_run *r, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct run_params rp;
	int rc;

	fill_params(&rp, r);
	lk_buf_addf(
		&sql,
		"INSERT INTO %sruns (id, job, type, status, stage, progress, rows_read,"
		" rows_written, rows_failed, total_estimate, started_ms, updated_ms,"
		" finished_ms, error, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
		" $11, $12, $13, $14, $15) ON CONFLICT (id) DO UPDATE SET type = excluded.type,"
		" status = excluded.status, stage = excluded.stage, progress = excluded.progress,"
		" rows_read = excluded.rows_read, rows_written = excluded.rows_written,"
		" rows_failed = excluded.rows_failed, total_estimate = excluded.total_estimate,"
		" started_ms = excluded.started_ms, updated_ms = excluded.updated_ms,"
		" finished_ms = excluded.finished_ms, error = excluded.error,"
		" epoch = excluded.epoch",
		s->prefix);
	rc = lk_store_exec(s, sql.buf, 15, rp.p, NULL, err);
	lk_buf_release(&sql);
	if (rc == 0)
		lk_store_run_observe(s, r);
	return rc;
}

int lk_store_run_queue(struct lk_store *s, const struct lk_run *r, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct run_params rp;
	int rc;

	fill_params(&rp, r);
	lk_buf_addf(&sql,
		    "INSERT INTO %sruns (id, job, type, status, stage, progress, rows_read,"
		    " rows_written, rows_failed, total_estimate, started_ms, updated_ms,"
		    " finished_ms, error, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
		    " $11, $12, $13, $14, $15) ON CONFLICT (id) DO NOTHING",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 15, rp.p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_run_find(struct lk_store *s, const char *id, struct lk_rows *out, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	const char *p[1] = {id};
	int rc;

	lk_buf_addf(
		&sql,
		"SELECT id, job, type, status, stage, progress, rows_read, rows_written,"
		" rows_failed, total_estimate, started_ms, updated_ms, finished_ms, error, epoch"
		" FROM %sruns WHERE id = $1",
		s->prefix);
	rc = lk_store_exec(s, sql.buf, 1, p, out, err);
	lk_buf_release(&sql);
	return rc;
}

void lk_store_set_observer(struct lk_store *s, lk_run_observer cb, void *arg)
{
	s->observer = cb;
	s->observer_arg = arg;
}

void lk_store_run_observe(struct lk_store *s, const struct lk_run *r)
{
	if (s && s->observer)
		s->observer(s->observer_arg, r);
}

int lk_store_run_update(struct lk_store *s, const struct lk_run *r, struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct run_params rp;
	int rc;

	const char *p[12];

	fill_params(&rp, r);
	p[0] = rp.p[0];				     /* id */
	memcpy(&p[1], &rp.p[3], 7 * sizeof(char *)); /* status .. total */
	p[8] = rp.p[11];			     /* updated */
	p[9] = rp.p[12];			     /* finished */
	p[10] = rp.p[13];			     /* error */
	p[11] = rp.p[14];			     /* epoch */
	/* Only a holder of the same or a newer epoch may update a run (DESIGN decision 5); a
	 * verify pass writes nothing of the job's but through its fence, and is its own. */
	lk_buf_addf(&sql,
		    "UPDATE %sruns SET status = $2, stage = $3, progress = $4, rows_read = $5,"
		    " rows_written = $6, rows_failed = $7, total_estimate = $8, updated_ms = $9,"
		    " finished_ms = $10, error = $11%s WHERE id = $1",
		    s->prefix,
		    r->unfenced ? ", epoch = CASE WHEN epoch >= $12 THEN epoch ELSE $12 END" : "");
	if (!r->unfenced)
		lk_buf_addf(&sql,
			    " AND %lld >= (SELECT coalesce(max(l.epoch), 0) FROM %sleases l"
			    " WHERE l.job = %sruns.job)",
			    (long long)r->epoch, s->prefix, s->prefix);
	rc = lk_store_exec(s, sql.buf, r->unfenced ? 12 : 11, p, NULL, err);
	lk_buf_release(&sql);
	lk_store_run_observe(s, r); /* the live view follows the run even if the write failed */
	return rc;
}

int lk_store_runs(struct lk_store *s, const char *job, int limit, struct lk_rows *out,
		  struct lk_err *err)
{
	return lk_store_runs_of(s, job, LK_RUNS_ALL, limit, out, err);
}

int lk_store_runs_of(struct lk_store *s, const char *job, enum lk_runs_which which, int limit,
		     struct lk_rows *out, struct lk_err *err)
{
	static const char *const filter[] = {"", " AND type NOT IN ('verify', 'repair')",
					     " AND type IN ('verify', 'repair')"};
	struct lk_buf sql = LK_BUF_INIT;
	char lim[16];
	const char *p[2] = {lim, job};
	int rc;

	(void)snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 20);
	lk_buf_addf(
		&sql,
		"SELECT id, job, type, status, stage, progress, rows_read, rows_written,"
		" rows_failed, total_estimate, started_ms, updated_ms, finished_ms, error, epoch"
		" FROM %sruns WHERE %s%s ORDER BY started_ms DESC, id DESC LIMIT $1",
		s->prefix, job ? "job = $2" : "true", filter[which]);
	rc = lk_store_exec(s, sql.buf, job ? 2 : 1, p, out, err);
	lk_buf_release(&sql);
	return rc;
}

int lk_store_runs_interrupt_stale(struct lk_store *s, const char *job, const char *except_id,
				  struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	char now[24];
	const char *p[3] = {now, job ? job : "", except_id ? except_id : ""};
	int rc;

	(void)snprintf(now, sizeof(now), "%lld", (long long)lk_wall_ms());
	lk_buf_addf(&sql,
		    "UPDATE %sruns SET status = 'interrupted', finished_ms = $1, updated_ms = $1,"
		    " error = coalesce(error, 'the process running it stopped before it finished')"
		    " WHERE status IN ('running', 'queued') AND id <> $3"
		    /* a job's start leaves its verify passes alone: they run beside it */
		    " AND ($2 = '' OR (job = $2 AND type NOT IN ('verify', 'repair')))",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 3, p, NULL, err);
	lk_buf_release(&sql);
	return rc;
}

struct lk_job_lock {
	struct lk_store *s;
	int fd; /* SQLite store: the flock'd file */
	/* PostgreSQL store: a command's own lease (a daemon's are held by its lease thread) */
	struct lk_lease_keeper *keeper;
};

/* A file-name-safe rendering of a job name. */
static void safe_name(struct lk_buf *b, const char *job)
{
	for (const char *p = job; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')
			lk_buf_addch(b, (char)ch);
		else
			lk_buf_addf(b, "%%%02X", ch);
	}
}

static int lock_file(struct lk_job_lock *l, const char *job, struct lk_err *err)
{
	struct lk_buf path = LK_BUF_INIT;
	int rc = 0;

	lk_buf_addf(&path, "%s.job.", l->s->lock_base);
	safe_name(&path, job);
	lk_buf_adds(&path, ".lock");
	l->fd = open(path.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		rc = lk_err_set(err, LK_ERR_IO, "cannot open lock file '%s': %s", path.buf,
				strerror(errno));
	} else if (flock(l->fd, LOCK_EX | LOCK_NB) < 0) {
		rc = lk_err_set(err, errno == EWOULDBLOCK ? LK_ERR_BUSY : LK_ERR_IO,
				"job '%s' is being run by another lockstep process (lock file '%s' "
				"is held)",
				job, path.buf);
		(void)close(l->fd);
		l->fd = -1;
	}
	lk_buf_release(&path);
	return rc;
}

struct lk_job_lock *lk_store_daemon_lock(struct lk_store *s, struct lk_err *err)
{
	struct lk_job_lock *l = lk_xcalloc(1, sizeof(*l));
	struct lk_buf path = LK_BUF_INIT;

	l->s = s;
	l->fd = -1;
	if (s->kind != LK_DB_SQLITE)
		return l; /* several instances share a PostgreSQL store (leases come later) */
	lk_buf_addf(&path, "%s.lock", s->lock_base);
	l->fd = open(path.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		lk_err_set(err, LK_ERR_IO, "cannot open lock file '%s': %s", path.buf,
			   strerror(errno));
	} else if (flock(l->fd, LOCK_EX | LOCK_NB) < 0) {
		lk_err_set(err, errno == EWOULDBLOCK ? LK_ERR_BUSY : LK_ERR_IO,
			   "another `lockstep run` uses this state store (lock file '%s' is held); "
			   "several instances need a PostgreSQL state store",
			   path.buf);
	} else {
		lk_buf_release(&path);
		return l;
	}
	lk_buf_release(&path);
	lk_store_job_unlock(l);
	return NULL;
}

/* Sets the job's epoch to max(store, target) + 1 and returns it. */
static int bump_epoch(struct lk_store *s, const char *job, int64_t target_epoch, int64_t *epoch,
		      struct lk_err *err)
{
	struct lk_buf sql = LK_BUF_INIT;
	struct lk_rows rows;
	char te[24];
	const char *p[2] = {job, te};
	int rc;

	(void)snprintf(te, sizeof(te), "%lld", (long long)target_epoch);
	lk_rows_init(&rows, 1);
	lk_buf_addf(&sql,
		    "INSERT INTO %sleases AS l (job, epoch) VALUES ($1, CAST($2 AS bigint) + 1)"
		    " ON CONFLICT (job) DO UPDATE SET epoch ="
		    " CASE WHEN l.epoch > CAST($2 AS bigint) THEN l.epoch + 1 ELSE CAST($2 AS "
		    "bigint) + 1 END RETURNING epoch",
		    s->prefix);
	rc = lk_store_exec(s, sql.buf, 2, p, &rows, err);
	if (rc == 0 && (rows.nrows != 1 || lk_int64_parse(LK_ROW(&rows, 0)[0].p, epoch) < 0))
		rc = lk_err_set(err, LK_ERR_INTERNAL, "cannot read the new epoch of job '%s'", job);
	lk_rows_release(&rows);
	lk_buf_release(&sql);
	return rc;
}

struct lk_job_lock *lk_store_job_lock(struct lk_store *s, const char *job, int64_t target_epoch,
				      int64_t *epoch, struct lk_err *err)
{
	struct lk_job_lock *l = lk_xcalloc(1, sizeof(*l));
	int rc;

	l->s = s;
	l->fd = -1;
	if (s->kind == LK_DB_SQLITE) /* one process at a time per job: the file lock */
		rc = lock_file(l, job, err) == 0 ? bump_epoch(s, job, target_epoch, epoch, err)
						 : -1;
	else if (!s->member && !(l->keeper = lk_lease_keeper_take(s, job, err)))
		rc = -1; /* a command outside `lockstep run` takes the lease for itself */
	else		 /* the holder of the job's lease, while it lasts */
		rc = lk_store_lease_bump(s, job, target_epoch, epoch, err);
	if (rc == 0)
		return l;
	lk_store_job_unlock(l);
	return NULL;
}

void lk_store_job_unlock(struct lk_job_lock *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		(void)close(l->fd); /* releases the flock */
	lk_lease_keeper_drop(l->keeper, l->s);
	free(l);
}
