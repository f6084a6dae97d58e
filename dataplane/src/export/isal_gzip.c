/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gzip members through ISA-L's igzip (Debian's libisal), level 1: the export core's compressor
 * (src/export/gzip.rs). A shim compiled against the installed header, so that Rust never lays out
 * struct isal_zstream itself (its size and fields differ between ISA-L releases): Rust allocates
 * tg_gzip_state_size() bytes, and hands them back to the calls below.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <isa-l/igzip_lib.h>

struct tg_gzip {
	struct isal_zstream s;
	uint8_t level_buf[ISAL_DEF_LVL1_DEFAULT];
};

size_t tg_gzip_state_size(void)
{
	return sizeof(struct tg_gzip);
}

size_t tg_gzip_state_align(void)
{
	return _Alignof(struct tg_gzip);
}

/* Start a new gzip member; its input comes in pieces (tg_gzip_input). */
void tg_gzip_start(struct tg_gzip *g)
{
	isal_deflate_init(&g->s);
	g->s.level = 1;
	g->s.level_buf = g->level_buf;
	g->s.level_buf_size = sizeof(g->level_buf);
	g->s.gzip_flag = IGZIP_GZIP;
	g->s.flush = NO_FLUSH;
	g->s.end_of_stream = 0;
	g->s.next_in = NULL;
	g->s.avail_in = 0;
}

/* The next piece of the member's input, in[0..len); `last`: the member ends with it. */
void tg_gzip_input(struct tg_gzip *g, const uint8_t *in, uint32_t len, int last)
{
	g->s.next_in = (uint8_t *)in;
	g->s.avail_in = len;
	g->s.end_of_stream = last ? 1 : 0;
}

/*
 * Compress into out[0..cap); *wrote: the bytes written there. Returns 1 when the member is
 * complete (header, data, CRC-32 and length trailer), 2 when the piece given is consumed and
 * the member wants the next one, 0 when it needs more room, or ISA-L's negative error code.
 */
int tg_gzip_step(struct tg_gzip *g, uint8_t *out, uint32_t cap, uint32_t *wrote)
{
	int rc;

	g->s.next_out = out;
	g->s.avail_out = cap;
	rc = isal_deflate(&g->s);
	*wrote = cap - g->s.avail_out;
	if (rc != COMP_OK)
		return rc < 0 ? rc : -1000 - rc;
	if (g->s.internal_state.state == ZSTATE_END)
		return 1;
	if (g->s.avail_out == 0)
		return 0;
	if (g->s.avail_in == 0 && !g->s.end_of_stream)
		return 2;
	return 0;
}
