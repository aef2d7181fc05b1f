/* arena.c - bump allocation with reset for batch memory. */
#include "arena.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

struct lk_arena_chunk {
	struct lk_arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

void lk_arena_init(struct lk_arena *a, size_t chunk_size)
{
	a->head = NULL;
	a->spare = NULL;
	a->chunk_size = chunk_size ? chunk_size : (size_t)64 * 1024;
	a->total = 0;
}

void *lk_arena_alloc(struct lk_arena *a, size_t n)
{
	struct lk_arena_chunk *c = a->head;
	size_t align = sizeof(max_align_t);
	void *p;

	n = (n + align - 1) / align * align;
	if (!c || c->size - c->used < n) {
		size_t size = n > a->chunk_size ? n : a->chunk_size;

		if (size == a->chunk_size && a->spare) {
			c = a->spare;
			a->spare = c->next;
		} else {
			c = lk_xmalloc(sizeof(*c) + size);
			c->size = size;
			a->total += size;
		}
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

char *lk_arena_memdup(struct lk_arena *a, const void *p, size_t n)
{
	char *q = lk_arena_alloc(a, n + 1);

	if (n)
		memcpy(q, p, n);
	q[n] = '\0';
	return q;
}

void lk_arena_reset(struct lk_arena *a)
{
	struct lk_arena_chunk *c = a->head;

	/* Standard chunks go to the spare list for the next batch (no malloc/mmap churn:
	 * a steady stream of batches reuses the same pages); oversized ones are freed. */
	while (c) {
		struct lk_arena_chunk *next = c->next;

		if (c->size == a->chunk_size) {
			c->used = 0;
			c->next = a->spare;
			a->spare = c;
		} else {
			a->total -= c->size;
			free(c);
		}
		c = next;
	}
	a->head = NULL;
}

static void free_list(struct lk_arena_chunk *c)
{
	while (c) {
		struct lk_arena_chunk *next = c->next;

		free(c);
		c = next;
	}
}

void lk_arena_release(struct lk_arena *a)
{
	free_list(a->head);
	free_list(a->spare);
	a->head = NULL;
	a->spare = NULL;
	a->total = 0;
}
