/* budget.c - the batch divisor the memory watchdog sets (see budget.h). */
#include "budget.h"

#include <stdatomic.h>

static atomic_int divisor = 1;

void lk_sync_set_batch_divisor(int d)
{
	atomic_store(&divisor, d < 1 ? 1 : d);
}

int lk_sync_batch_divisor(void)
{
	return atomic_load(&divisor);
}

int lk_sync_batch(const struct lk_job *job)
{
	int b = job->batch / atomic_load(&divisor);

	return b < 1 ? 1 : b;
}
