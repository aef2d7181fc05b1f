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

		c = lk_xmalloc(sizeof(*c) + size);
		c->size = size;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->total += size;
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
	struct lk_arena_chunk *keep = NULL, *c = a->head;

	/* Keep the oldest chunk of the standard size; free the others. */
	while (c) {
		struct lk_arena_chunk *next = c->next;

		if (!next && c->size == a->chunk_size) {
			keep = c;
		} else {
			a->total -= c->size;
			free(c);
		}
		c = next;
	}
	if (keep)
		keep->used = 0;
	a->head = keep;
}

void lk_arena_release(struct lk_arena *a)
{
	struct lk_arena_chunk *c = a->head;

	while (c) {
		struct lk_arena_chunk *next = c->next;

		free(c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}
