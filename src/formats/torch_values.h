/*
 * torch_values.h -- copies a torch checkpoint's object graph into the public
 * value tree (ck_value) held by the model.
 */
#ifndef CKI_TORCH_VALUES_H
#define CKI_TORCH_VALUES_H

#include "../pickle/torch_objects.h"

/* Gives the model index of tensor T (adding it to the model when the reader
 * did not), or (size_t)-1 and a reason in *WHY when it cannot be represented. */
typedef ck_status (*cki_values_tensor_fn)(void *user, const cki_tobj *t, size_t *index,
                                          const char **why);

/* Copies the graph under ROOT into M's arena; *OUT is its root. */
ck_status cki_torch_values_tree(ck_model *m, cki_trec *r, const cki_tobj *root,
                                cki_values_tensor_fn fn, void *user, const ck_value **out);

#endif
