/*
 * config_yaml.c - the only user of libfyaml: turns the interpolated config text into a
 * small tree of lk_ynode with file positions, refusing what a config has no use for
 * (anchors, aliases, tags, several documents) and duplicate keys.
 */
#include "config_int.h"
#include "core/buf.h"

#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Exported by libfyaml 0.7.12 but declared only in the public headers of later releases:
 * where an event's (or a token's) text starts. The prototypes are the ones those headers
 * use, so this stays compatible with them.
 */
const struct fy_mark *fy_event_start_mark(struct fy_event *fye);
const struct fy_mark *fy_token_start_mark(struct fy_token *fyt);

#define YAML_MAX_DEPTH 64

struct yparse {
	struct fy_parser *fyp;
	struct fy_diag *diag;
	struct lk_cfgctx *c;
	const struct lk_interp *ip;
	int depth;
};

static void mark_pos(const struct yparse *p, const struct fy_mark *m, int *line, int *col)
{
	if (!m) {
		*line = 1;
		*col = 1;
		return;
	}
	lk_interp_pos(p->ip, m->input_pos, line, col);
}

/* Reports libfyaml's first collected error (or a generic one) at its position. */
static void *syntax_error(struct yparse *p, const struct fy_mark *fallback)
{
	void *iter = NULL;
	struct fy_diag_error *de = fy_diag_errors_iterate(p->diag, &iter);
	int line, col;

	if (!de) {
		mark_pos(p, fallback, &line, &col);
		lk_err_set(p->c->err, LK_ERR_CONFIG, "%s:%d:%d: invalid YAML: unexpected end",
			   p->c->file, line, col);
		return NULL;
	}
	if (de->fyt && fy_token_start_mark(de->fyt)) {
		mark_pos(p, fy_token_start_mark(de->fyt), &line, &col);
	} else {
		size_t off = lk_interp_out_offset(p->ip, de->line, de->column);

		lk_interp_pos(p->ip, off, &line, &col);
	}
	lk_err_set(p->c->err, LK_ERR_CONFIG, "%s:%d:%d: invalid YAML: %s%s", p->c->file, line, col,
		   de->msg ? de->msg : "syntax error",
		   de->msg && strstr(de->msg, "mapping on the same line")
			   ? " (quote a value that holds ': ' or ends in ':', like "
			     "'sqlite::memory:')"
			   : "");
	return NULL;
}

/* The next event, or NULL with the error reported. */
static struct fy_event *next_event(struct yparse *p, const struct fy_mark *last)
{
	struct fy_event *e = fy_parser_parse(p->fyp);

	if (!e)
		syntax_error(p, last);
	return e;
}

static struct lk_ynode *node_new(struct yparse *p, struct fy_event *e, enum lk_ytype type)
{
	struct lk_ynode *n = lk_xcalloc(1, sizeof(*n));

	n->type = type;
	if (fy_event_start_mark(e)) /* empty scalars have none: build_children fills it */
		mark_pos(p, fy_event_start_mark(e), &n->line, &n->col);
	return n;
}

void lk_ynode_free(struct lk_ynode *n)
{
	if (!n)
		return;
	for (int i = 0; i < n->nkids; i++)
		lk_ynode_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static void node_add(struct lk_ynode *n, struct lk_ynode *kid)
{
	n->kids = lk_xrealloc(n->kids, sizeof(struct lk_ynode *) * (size_t)(n->nkids + 1));
	n->kids[n->nkids++] = kid;
}

static bool is_null_text(const char *s)
{
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

/* Refuses anchors and tags on the node that event e starts. */
static int check_props(struct yparse *p, struct fy_event *e)
{
	struct fy_token *anchor = NULL, *tag = NULL;
	const char *what = NULL, *txt;
	struct fy_token *t;
	size_t len = 0;
	int line, col;

	if (e->type == FYET_SCALAR) {
		anchor = e->scalar.anchor;
		tag = e->scalar.tag;
	} else if (e->type == FYET_MAPPING_START) {
		anchor = e->mapping_start.anchor;
		tag = e->mapping_start.tag;
	} else if (e->type == FYET_SEQUENCE_START) {
		anchor = e->sequence_start.anchor;
		tag = e->sequence_start.tag;
	} else if (e->type == FYET_ALIAS) {
		anchor = e->alias.anchor;
	}
	if (e->type == FYET_ALIAS)
		what = "an alias '*";
	else if (anchor)
		what = "an anchor '&";
	else if (tag)
		what = "a tag '";
	if (!what)
		return 0;
	t = (e->type == FYET_ALIAS || anchor) ? anchor : tag;
	txt = t ? fy_token_get_text(t, &len) : NULL;
	if (t && fy_token_start_mark(t) && fy_token_start_mark(t)->input_pos > 0 && t == anchor)
		lk_interp_pos(p->ip, fy_token_start_mark(t)->input_pos - 1, &line,
			      &col); /* & or * */
	else
		mark_pos(p, t ? fy_token_start_mark(t) : fy_event_start_mark(e), &line, &col);
	return lk_err_set(p->c->err, LK_ERR_CONFIG,
			  "%s:%d:%d: expected a plain value (anchors, aliases and tags are not "
			  "supported), found %s%.*s'",
			  p->c->file, line, col, what, txt ? (int)len : 0, txt ? txt : "");
}

static struct lk_ynode *build_node(struct yparse *p, struct fy_event *e);

/* Fails when the mapping already holds a key equal to `key`. */
static int check_duplicate(struct yparse *p, const struct lk_ynode *map, const struct lk_ynode *key)
{
	for (int i = 0; i < map->nkids; i += 2) {
		const struct lk_ynode *k = map->kids[i];

		if (k->len == key->len && memcmp(k->text, key->text, k->len) == 0)
			return lk_cfg_fail(p->c, key,
					   "expected each key once, found '%s' again (first at "
					   "line %d)",
					   key->text, k->line);
	}
	return 0;
}

/* Reads the items of a mapping or sequence up to its end event into n. */
static int build_children(struct yparse *p, struct lk_ynode *n, enum fy_event_type end)
{
	for (;;) {
		struct fy_event *e = next_event(p, NULL);
		struct lk_ynode *kid;

		if (!e)
			return -1;
		if (e->type == end) {
			fy_parser_event_free(p->fyp, e);
			return 0;
		}
		kid = build_node(p, e);
		if (!kid)
			return -1;
		if (kid->line == 0) { /* an empty value: report it at its key (or item's list) */
			const struct lk_ynode *prev = n->nkids ? n->kids[n->nkids - 1] : n;

			kid->line = prev->line;
			kid->col = prev->col;
		}
		if (n->type == LK_Y_MAP && n->nkids % 2 == 0) {
			char found[96];

			if (kid->type == LK_Y_MAP || kid->type == LK_Y_SEQ) {
				lk_ynode_describe(kid, found, sizeof(found));
				lk_cfg_fail(p->c, kid, "expected a key, found %s", found);
				lk_ynode_free(kid);
				return -1;
			}
			if (check_duplicate(p, n, kid) < 0) {
				lk_ynode_free(kid);
				return -1;
			}
		}
		node_add(n, kid);
	}
}

static struct lk_ynode *build_scalar(struct yparse *p, struct fy_event *e)
{
	struct lk_ynode *n = node_new(p, e, LK_Y_SCALAR);
	enum fy_scalar_style style = fy_token_scalar_style(e->scalar.value);
	const struct fy_mark *m = fy_event_start_mark(e);
	size_t len = 0;
	const char *txt = fy_token_get_text(e->scalar.value, &len);

	n->text = lk_xstrndup(txt ? txt : "", txt ? len : 0);
	n->len = txt ? len : 0;
	n->quoted = style != FYSS_PLAIN;
	if ((style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED) && m && m->input_pos > 0)
		lk_interp_pos(p->ip, m->input_pos - 1, &n->line, &n->col); /* at the quote */
	if (!n->quoted && is_null_text(n->text))
		n->type = LK_Y_NULL;
	return n;
}

/* Builds the node that event e starts, consuming e and the node's other events. */
static struct lk_ynode *build_node(struct yparse *p, struct fy_event *e)
{
	struct lk_ynode *n = NULL;
	enum fy_event_type end;

	if (check_props(p, e) < 0)
		goto out;
	if (e->type == FYET_SCALAR) {
		n = build_scalar(p, e);
		goto out;
	}
	if (e->type != FYET_MAPPING_START && e->type != FYET_SEQUENCE_START) {
		n = node_new(p, e, LK_Y_NULL);
		lk_cfg_fail(p->c, n, "invalid YAML: unexpected event %d", (int)e->type);
		lk_ynode_free(n);
		n = NULL;
		goto out;
	}
	n = node_new(p, e, e->type == FYET_MAPPING_START ? LK_Y_MAP : LK_Y_SEQ);
	end = e->type == FYET_MAPPING_START ? FYET_MAPPING_END : FYET_SEQUENCE_END;
	fy_parser_event_free(p->fyp, e);
	e = NULL;
	if (++p->depth > YAML_MAX_DEPTH) {
		lk_cfg_fail(p->c, n, "expected at most %d levels of nesting, found more",
			    YAML_MAX_DEPTH);
		lk_ynode_free(n);
		return NULL;
	}
	if (build_children(p, n, end) < 0) {
		lk_ynode_free(n);
		n = NULL;
	}
	p->depth--;
out:
	if (e)
		fy_parser_event_free(p->fyp, e);
	return n;
}

/* Expects an event of type `type` next; frees it. */
static int expect_event(struct yparse *p, enum fy_event_type type, const char *what)
{
	struct fy_event *e = next_event(p, NULL);
	int line, col;

	if (!e)
		return -1;
	if (e->type == type) {
		fy_parser_event_free(p->fyp, e);
		return 0;
	}
	mark_pos(p, fy_event_start_mark(e), &line, &col);
	fy_parser_event_free(p->fyp, e);
	return lk_err_set(p->c->err, LK_ERR_CONFIG, "%s:%d:%d: expected %s, found another document",
			  p->c->file, line, col, what);
}

/* Reads the stream: one document holding one node (or nothing). */
static struct lk_ynode *parse_stream(struct yparse *p)
{
	struct fy_event *e;
	struct lk_ynode *root;

	if (expect_event(p, FYET_STREAM_START, "a YAML stream") < 0)
		return NULL;
	e = next_event(p, NULL);
	if (!e)
		return NULL;
	if (e->type == FYET_STREAM_END) {
		fy_parser_event_free(p->fyp, e);
		root = lk_xcalloc(1, sizeof(*root));
		root->type = LK_Y_MAP;
		root->line = root->col = 1;
		return root;
	}
	fy_parser_event_free(p->fyp, e); /* DOCUMENT_START */
	e = next_event(p, NULL);
	if (!e)
		return NULL;
	root = build_node(p, e);
	if (!root)
		return NULL;
	if (root->line == 0)
		root->line = root->col = 1;
	if (expect_event(p, FYET_DOCUMENT_END, "the end of the document") < 0 ||
	    expect_event(p, FYET_STREAM_END, "one YAML document") < 0) {
		lk_ynode_free(root);
		return NULL;
	}
	if (root->type == LK_Y_NULL) {
		root->type = LK_Y_MAP;
		free(root->text);
		root->text = NULL;
		root->len = 0;
	}
	return root;
}

/*
 * Refuses text that is not UTF-8 (YAML 1.2 reads Unicode only) before libfyaml sees it:
 * libfyaml 0.7.12 loops forever on some malformed sequences, e.g. a directive line "%\xf9"
 * (found by fuzz/fuzz_config.c; pantoniou/libfyaml#101, fixed after that release).
 */
static int check_utf8(struct lk_cfgctx *c, const struct lk_interp *ip)
{
	const unsigned char *t = (const unsigned char *)ip->text;
	size_t i = 0, k;
	int line, col;

	while (t && i < ip->len) {
		k = lk_utf8_seq(t + i, ip->len - i);
		if (k == 0) {
			lk_interp_pos(ip, i, &line, &col);
			return lk_err_set(c->err, LK_ERR_CONFIG,
					  "%s:%d:%d: invalid YAML: expected UTF-8 text, found the "
					  "byte 0x%02X",
					  c->file, line, col, t[i]);
		}
		i += k;
	}
	return 0;
}

struct lk_ynode *lk_yaml_parse(struct lk_cfgctx *c, const struct lk_interp *ip)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg;
	struct yparse p = {NULL, NULL, c, ip, 0};
	struct lk_ynode *root = NULL;

	if (check_utf8(c, ip) < 0)
		return NULL;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.colorize = false;
	p.diag = fy_diag_create(&dcfg);
	if (!p.diag) {
		lk_err_set(c->err, LK_ERR_NOMEM, "cannot create the YAML diagnostics");
		return NULL;
	}
	fy_diag_set_collect_errors(p.diag, true);
	memset(&pcfg, 0, sizeof(pcfg));
	pcfg.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE;
	pcfg.diag = p.diag;
	p.fyp = fy_parser_create(&pcfg);
	if (!p.fyp || fy_parser_set_string(p.fyp, ip->text ? ip->text : "", ip->len) != 0) {
		lk_err_set(c->err, LK_ERR_NOMEM, "cannot create the YAML parser");
		goto out;
	}
	root = parse_stream(&p);
out:
	if (p.fyp)
		fy_parser_destroy(p.fyp);
	fy_diag_destroy(p.diag);
	return root;
}

const struct lk_ynode *lk_ymap_key(const struct lk_ynode *map, const char *key)
{
	if (!map || map->type != LK_Y_MAP)
		return NULL;
	for (int i = 0; i + 1 < map->nkids; i += 2) {
		if (strcmp(map->kids[i]->text ? map->kids[i]->text : "", key) == 0)
			return map->kids[i];
	}
	return NULL;
}

const struct lk_ynode *lk_ymap_get(const struct lk_ynode *map, const char *key)
{
	if (!map || map->type != LK_Y_MAP)
		return NULL;
	for (int i = 0; i + 1 < map->nkids; i += 2) {
		if (strcmp(map->kids[i]->text ? map->kids[i]->text : "", key) == 0)
			return map->kids[i + 1];
	}
	return NULL;
}
