/*
 * torch_full.h -- the whole-checkpoint rewrite: a PyTorch file written back
 * as a torch.save zip holding its entire object tree (tree_write.h has the
 * value rules; torch_full.c the tensors and storages).
 */
#ifndef CKI_TORCH_FULL_H
#define CKI_TORCH_FULL_H

#include "format.h"

/* 1 if JOB asks for a whole-tree rewrite and its input is one PyTorch file. */
int cki_torch_full_applies(const cki_write_job *job);
/* Writes JOB's input tree (zip, "archive/" prefix when CKPT, else the
 * output's stem), with JOB's tensors (selection, names, dtypes) as its
 * state dict. */
ck_status cki_torch_full_write(cki_write_job *job, int ckpt);

/* fmt_torch_write.c: torch's names for DT -- a typed storage class
 * ("FloatStorage") or NULL, and a dtype name ("uint16") used with
 * UntypedStorage when there is no class; 1 if torch has neither. */
int cki_torch_type_names(ck_dtype dt, const char **cls, const char **v3);
/* The archive's record prefix for output PATH (cki_malloc'd). */
char *cki_torch_archive_prefix(ck_ctx *ctx, const char *path, int ckpt);

#endif
