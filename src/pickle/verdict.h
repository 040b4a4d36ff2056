/*
 * verdict.h -- what a pickled global reference means for safety.
 *
 * Every GLOBAL / STACK_GLOBAL / INST the machine meets names a module and an
 * attribute. Unpickling with Python would import the module and fetch the
 * attribute; REDUCE would then call it. ckptkit never does either, but the
 * scanner reports each reference with one of three verdicts:
 *
 *   CK_VERDICT_ALLOWED    ckptkit recognises it and turns it into data: the
 *                         torch rebuild functions, storage classes, dtypes,
 *                         Size/device/Parameter, OrderedDict & co., the
 *                         handful of builtins and numpy reconstructors that
 *                         torch's weights_only loader also accepts.
 *   CK_VERDICT_DANGEROUS  calling or even fetching it can run code, load
 *                         native libraries, spawn processes, touch files or
 *                         the network (os.system, builtins.eval, torch.load,
 *                         runpy, ctypes, ...), or the reference cannot be
 *                         resolved at all ("?" from a STACK_GLOBAL whose
 *                         operands were not strings, a malformed name).
 *   CK_VERDICT_UNKNOWN    anything else: kept opaque, never executed.
 *
 * Matching is done on the dotted path "module.name": Python 2 spellings are
 * mapped first (__builtin__, exceptions -> builtins; copy_reg -> copyreg;
 * cPickle -> pickle; torch.tensor -> torch._tensor), a dangerous module
 * matches with all its submodules (os.path), and attribute chains in the
 * name (protocol 4 allows "system.__call__") are judged by every part, so
 * a dangerous part or a dunder attribute walk makes the whole reference
 * dangerous.
 */
#ifndef CKI_VERDICT_H
#define CKI_VERDICT_H

#include "../common/cki.h"

/* The verdict for MODULE.NAME (either may be NULL: dangerous). */
ck_verdict cki_global_verdict(const char *module, const char *name);

/* "allowed", "unknown" or "dangerous". */
const char *cki_verdict_name(ck_verdict v);

#endif
