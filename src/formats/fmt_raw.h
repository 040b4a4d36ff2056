/*
 * fmt_raw.h -- the raw reader's manifest step, exposed for tests and the
 * fuzz target (which feed a manifest from memory). The driver itself is
 * cki_fmt_raw in fmt_registry.c's list.
 */
#ifndef CKI_FMT_RAW_H
#define CKI_FMT_RAW_H

#include "format.h"

/* Validates MANIFEST (a ckptkit-raw JSON manifest) against DATA and adds its
 * tensors (over DATA) and metadata to M. Messages name MANIFEST's path.
 * Neither source is taken over: the caller keeps both alive as long as M. */
ck_status cki_raw_read_manifest(ck_model *m, const cki_source *data, const cki_source *manifest);

#endif
