/* fence.c - epoch, job lock and seal before a job writes a database (fence.h). */
#include "fence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lk_fence_take(struct lk_fence *f, struct lk_store *store, struct lk_db *db, const char *job,
		  struct lk_err *err)
{
	const struct lk_connector_ops *ops = db->ops;
	int older;

	memset(f, 0, sizeof(*f));
	if (lk_store_ident(store, job, f->ident, err) < 0)
		return -1;
	older = ops->position_setup(db->conn, err);
	if (older < 0)
		return -1;
	(void)snprintf(f->key, sizeof(f->key), "%s", older ? job : f->ident);
	lk_db_tag(db, f->key);
	if (ops->position_get(db->conn, f->key, &f->target_epoch, &f->pos, err) < 0)
		goto fail;
	f->lock = lk_store_job_lock(store, job, f->target_epoch, &f->epoch, err);
	if (!f->lock)
		goto fail;
	/* Read again under the lock: the previous holder may have committed in between. */
	free(f->pos);
	f->pos = NULL;
	if (ops->position_get(db->conn, f->key, &f->target_epoch, &f->pos, err) < 0)
		goto fail;
	if (f->target_epoch >= f->epoch) {
		lk_err_set(err, LK_ERR_FENCED,
			   "job '%s': the target holds epoch %lld, newer than ours (%lld)", job,
			   (long long)f->target_epoch, (long long)f->epoch);
		goto fail;
	}
	return 0;
fail:
	lk_fence_release(f);
	return -1;
}

int lk_fence_seal(struct lk_fence *f, struct lk_db *db, const char *job, const char *pos,
		  struct lk_err *err)
{
	const struct lk_connector_ops *ops = db->ops;

	(void)job;
	(void)lk_db_fence_others(db, f->key);
	if (ops->begin(db->conn, err) < 0 ||
	    ops->position_put(db->conn, f->key, f->epoch, pos, err) < 0 ||
	    ops->commit(db->conn, err) < 0) {
		ops->rollback(db->conn);
		return -1;
	}
	return 0;
}

void lk_fence_release(struct lk_fence *f)
{
	lk_store_job_unlock(f->lock);
	free(f->pos);
	memset(f, 0, sizeof(*f));
}
