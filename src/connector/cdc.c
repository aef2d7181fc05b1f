/* cdc.c - picks the change-capture ops of a connector. */
#include "cdc.h"

const struct lk_cdc_ops *lk_cdc_for(const struct lk_connector_ops *ops)
{
	if (ops == &lk_pg_ops)
		return &lk_pg_cdc_ops;
	if (ops == &lk_sqlite_ops)
		return &lk_sqlite_cdc_ops;
	return NULL;
}
