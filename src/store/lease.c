/*
 * lease.c - cluster members and job leases in a PostgreSQL state store (SPEC §5, DESIGN
 * decisions 5 and 6). Every time here is the database's clock_timestamp(): instances
 * never compare their own clocks. Lease rows are never deleted, so epochs only grow.
 */
#include "core/buf.h"
#include "core/units.h"
#include "store_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "lease"
#include "core/log.h"

void lk_store_set_member(struct lk_store *s, const char *member)
{
	free(s->member);
	s->member = member ? lk_xstrdup(member) : NULL;
}

const char *lk_store_member(const struct lk_store *s)
{
	return s->member;
}

int lk_store_member_beat(struct lk_store *s, const char *member, const char *name,
			 const char *labels, bool stopping, struct lk_err *err)
{
	const char *p[4] = {member, name, stopping ? "true" : "false", labels ? labels : ""};

	return lk_store_exec(
		s,
		"INSERT INTO lockstep.members (id, name, started_at, seen_at, stopping, labels)"
		" VALUES ($1, $2, clock_timestamp(), clock_timestamp(), $3::boolean, $4)"
		" ON CONFLICT (id) DO UPDATE SET seen_at = clock_timestamp(),"
		" stopping = excluded.stopping, labels = excluded.labels",
		4, p, NULL, err);
}

int lk_store_members_live(struct lk_store *s, int64_t ttl_ms, struct lk_rows *out,
			  struct lk_err *err)
{
	char ttl[24];
	const char *p[1] = {ttl};
	int rc;

	(void)snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
	rc = lk_store_exec(s,
			   "SELECT id, (extract(epoch FROM clock_timestamp() - started_at) * 1000)"
			   "::bigint, labels FROM lockstep.members WHERE NOT stopping"
			   " AND seen_at > clock_timestamp() - $1::bigint * interval '1 ms'"
			   " ORDER BY id",
			   1, p, out, err);
	if (rc == 0)
		(void)lk_store_exec(
			s,
			"DELETE FROM lockstep.members WHERE seen_at < clock_timestamp() -"
			" interval '1 day'",
			0, NULL, NULL, err);
	return rc;
}

int lk_store_leases(struct lk_store *s, struct lk_rows *out, struct lk_err *err)
{
	return lk_store_exec(s,
			     "SELECT job, holder, epoch, (holder IS NOT NULL AND expires_at >"
			     " clock_timestamp()) FROM lockstep.leases ORDER BY job",
			     0, NULL, out, err);
}

/* Runs a statement returning at most one bigint; *got says whether a row came. */
static int one_row(struct lk_store *s, const char *sql, int n, const char *const *p, bool *got,
		   int64_t *v, struct lk_err *err)
{
	struct lk_rows rows;
	int rc;

	lk_rows_init(&rows, 1);
	rc = lk_store_exec(s, sql, n, p, &rows, err);
	*got = rc == 0 && rows.nrows == 1;
	if (*got && v && lk_int64_parse(LK_ROW(&rows, 0)[0].p, v) < 0)
		rc = lk_err_set(err, LK_ERR_INTERNAL, "a lease statement returned '%s'",
				LK_ROW(&rows, 0)[0].p);
	lk_rows_release(&rows);
	return rc;
}

int lk_store_lease_acquire(struct lk_store *s, const char *job, const char *member, int64_t ttl_ms,
			   bool *got, int64_t *epoch, struct lk_err *err)
{
	char ttl[24];
	const char *p[3] = {job, member, ttl};

	(void)snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
	return one_row(s,
		       "INSERT INTO lockstep.leases AS l (job, holder, epoch, expires_at)"
		       " VALUES ($1, $2, 0, clock_timestamp() + $3::bigint * interval '1 ms')"
		       " ON CONFLICT (job) DO UPDATE SET holder = excluded.holder,"
		       " expires_at = excluded.expires_at"
		       " WHERE l.holder IS NULL OR l.holder = excluded.holder"
		       " OR l.expires_at <= clock_timestamp() RETURNING epoch",
		       3, p, got, epoch, err);
}

int lk_store_lease_renew(struct lk_store *s, const char *job, const char *member, int64_t ttl_ms,
			 bool *held, struct lk_err *err)
{
	char ttl[24];
	const char *p[3] = {job, member, ttl};

	(void)snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
	return one_row(s,
		       "UPDATE lockstep.leases SET expires_at = clock_timestamp() + $3::bigint *"
		       " interval '1 ms' WHERE job = $1 AND holder = $2 RETURNING epoch",
		       3, p, held, NULL, err);
}

int lk_store_lease_release(struct lk_store *s, const char *job, const char *member,
			   struct lk_err *err)
{
	const char *p[2] = {job, member};

	if (lk_store_exec(s,
			  "UPDATE lockstep.leases SET holder = NULL, expires_at = clock_timestamp()"
			  " WHERE job = $1 AND holder = $2",
			  2, p, NULL, err) < 0)
		return -1;
	/* followers LISTEN: one of them takes the job over at once */
	return lk_store_exec(s, "NOTIFY lockstep_leases", 0, NULL, NULL, err);
}

int lk_store_lease_bump(struct lk_store *s, const char *job, int64_t target_epoch, int64_t *epoch,
			struct lk_err *err)
{
	char te[24];
	const char *p[3] = {job, te, s->member};
	struct lk_rows rows;
	bool got;
	int rc;

	(void)snprintf(te, sizeof(te), "%lld", (long long)target_epoch);
	if (!s->member)
		return lk_err_set(err, LK_ERR_INTERNAL, "job '%s': no lease holder is set", job);
	rc = one_row(s,
		     "UPDATE lockstep.leases SET epoch = GREATEST(epoch, $2::bigint) + 1"
		     " WHERE job = $1 AND holder = $3 AND expires_at > clock_timestamp()"
		     " RETURNING epoch",
		     3, p, &got, epoch, err);
	if (rc < 0 || got)
		return rc;
	lk_rows_init(&rows, 2);
	rc = lk_store_exec(
		s,
		"SELECT holder, (expires_at > clock_timestamp())::text FROM lockstep.leases"
		" WHERE job = $1",
		1, p, &rows, err);
	if (rc == 0 && rows.nrows == 1 && !LK_ROW(&rows, 0)[0].null &&
	    LK_ROW(&rows, 0)[1].p[0] == 't')
		rc = lk_err_set(err, LK_ERR_BUSY, "job '%s' is held by %s", job,
				LK_ROW(&rows, 0)[0].p);
	else if (rc == 0)
		rc = lk_err_set(err, LK_ERR_BUSY, "job '%s': this process's lease on it has ended",
				job);
	lk_rows_release(&rows);
	return rc;
}

int lk_store_listen_leases(struct lk_store *s, struct lk_err *err)
{
	return lk_store_exec(s, "LISTEN lockstep_leases", 0, NULL, NULL, err);
}

/*
 * A one-job lease for a command that writes outside `lockstep run` (sync, errors replay,
 * verify --repair): taken in lk_store_job_lock, renewed by a thread on its own connection
 * every cluster.renew, released (with a NOTIFY) by lk_store_job_unlock.
 */
struct lk_lease_keeper {
	struct lk_store *s; /* the keeper's own handle */
	char *job, *member;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;
};

static void *keeper_main(void *arg)
{
	struct lk_lease_keeper *k = arg;
	struct timespec until;
	bool held = true;

	pthread_mutex_lock(&k->mu);
	while (!k->stop && held) {
		struct lk_err err = LK_ERR_INIT;
		int64_t due = lk_mono_ms() + k->s->renew_ms;

		until.tv_sec = (time_t)(due / 1000);
		until.tv_nsec = (long)(due % 1000) * 1000000L;
		while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) == 0)
			;
		if (k->stop)
			break;
		pthread_mutex_unlock(&k->mu);
		if (lk_store_lease_renew(k->s, k->job, k->member, k->s->lease_ms, &held, &err) <
		    0) {
			held = true; /* not known to be lost: try again at the next renewal */
			lk_log_warn_err(&err, "job %s: cannot renew this command's lease", k->job);
		} else if (!held) {
			lk_log_error("job %s: this command's lease was taken over; its further "
				     "writes are refused by the target (fenced)",
				     k->job);
		}
		pthread_mutex_lock(&k->mu);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

struct lk_lease_keeper *lk_lease_keeper_take(struct lk_store *s, const char *job,
					     struct lk_err *err)
{
	struct lk_lease_keeper *k;
	pthread_condattr_t ca;
	char member[160], host[64] = "";
	struct lk_rows rows;
	bool got = false;
	int64_t epoch;

	(void)gethostname(host, sizeof(host) - 1);
	(void)snprintf(member, sizeof(member), "cli@%s#%ld", host[0] ? host : "localhost",
		       (long)getpid());
	if (lk_store_lease_acquire(s, job, member, s->lease_ms, &got, &epoch, err) < 0)
		return NULL;
	if (!got) {
		const char *p[1] = {job};
		int rc;

		lk_rows_init(&rows, 1);
		rc = lk_store_exec(s, "SELECT holder FROM lockstep.leases WHERE job = $1", 1, p,
				   &rows, err);
		if (rc == 0)
			(void)lk_err_set(err, LK_ERR_BUSY,
					 "job '%s' is held by %s: a `lockstep run` instance runs "
					 "it (trigger it there with POST /api/sync, or stop that "
					 "instance)",
					 job,
					 rows.nrows == 1 && !LK_ROW(&rows, 0)[0].null
						 ? LK_ROW(&rows, 0)[0].p
						 : "another process");
		lk_rows_release(&rows);
		return NULL;
	}
	k = lk_xcalloc(1, sizeof(*k));
	k->s = lk_store_clone(s, err);
	k->job = lk_xstrdup(job);
	k->member = lk_xstrdup(member);
	pthread_mutex_init(&k->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (!k->s || pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
		if (k->s)
			(void)lk_err_set(err, LK_ERR_INTERNAL, "cannot start the lease keeper");
		lk_store_close(k->s);
		k->s = NULL;
		lk_lease_keeper_drop(k, s);
		return NULL;
	}
	lk_store_set_member(s, member);
	return k;
}

void lk_lease_keeper_drop(struct lk_lease_keeper *k, struct lk_store *s)
{
	struct lk_err err = LK_ERR_INIT;

	if (!k)
		return;
	if (k->s) {
		pthread_mutex_lock(&k->mu);
		k->stop = true;
		pthread_cond_signal(&k->cv);
		pthread_mutex_unlock(&k->mu);
		(void)pthread_join(k->thread, NULL);
		lk_store_close(k->s);
	}
	if (lk_store_lease_release(s, k->job, k->member, &err) < 0)
		lk_log_warn_err(&err,
				"job %s: cannot release this command's lease (it expires "
				"by itself)",
				k->job);
	lk_store_set_member(s, NULL);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	free(k->job);
	free(k->member);
	free(k);
}
