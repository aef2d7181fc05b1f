/* db.c - opening a database connection with retries and full-jitter back-off. */
#include "connector.h"

#include <stdlib.h>
#include <uuid/uuid.h>

#define LK_LOG_COMPONENT "db"
#include "core/log.h"
#include "core/units.h"

/* Full jitter (AWS architecture blog): a uniform pick in [0, min(max, initial*mult^n)]. */
int64_t lk_backoff_ms(const struct lk_retry_conf *r, int attempt)
{
	double cap = (double)r->initial_ms;
	unsigned char rnd[16];
	uint64_t x = 0;

	for (int i = 0; i < attempt; i++)
		cap *= r->multiplier;
	if (cap > (double)r->max_ms)
		cap = (double)r->max_ms;
	uuid_generate_random(rnd);
	for (int i = 0; i < 8; i++)
		x = (x << 8) | rnd[i];
	return (int64_t)((double)(x >> 11) / (double)(1ULL << 53) * cap);
}

int lk_db_open(struct lk_db *db, const struct lk_dbconf *conf, const struct lk_retry_conf *retry,
	       volatile const bool *stop, struct lk_err *err)
{
	struct lk_retry_conf def = {3, 1000, 30000, 2.0};
	int attempts;

	if (!retry)
		retry = &def;
	attempts = retry->attempts > 0 ? retry->attempts : 1;
	db->ops = lk_connector_for(conf->kind);
	db->conf = conf;
	db->conn = NULL;
	for (int i = 0; i < attempts; i++) {
		int64_t wait;

		db->conn = db->ops->open(conf, err);
		if (db->conn)
			return 0;
		if (!err->transient)
			return -1;
		if (i + 1 == attempts || (stop && *stop))
			break;
		wait = lk_backoff_ms(retry, i);
		lk_log_warn_err(err, "database '%s' unreachable, retry %d of %d in %lld ms",
				conf->name, i + 1, attempts - 1, (long long)wait);
		lk_sleep_ms(wait, stop);
	}
	err->code = LK_ERR_UNAVAILABLE;
	return lk_err_prefix(err, "database '%s' stayed unreachable after %d attempts", conf->name,
			     attempts);
}

void lk_db_close(struct lk_db *db)
{
	if (db->ops && db->conn)
		db->ops->close(db->conn);
	db->conn = NULL;
}
