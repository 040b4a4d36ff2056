/*
 * t_storage_index.c -- the recogniser's storages by key: numbered keys
 * ("0", "1", ... as torch.save writes them) live in a slot array, every
 * other key in the map; lookups and the "described twice" check must not
 * depend on which place a key went to.
 */
#include <stdio.h>

#include "common/cki.h"
#include "pickle/torch_objects.h"
#include "t.h"

static cki_tstorage *add(cki_trec *r, const char *key, const char *view, uint64_t numel)
{
    cki_tstorage *s = NULL;
    if (cki_trec_storage(r, key, view, "torch", "FloatStorage", numel, 0, &s)) return NULL;
    return s;
}

TEST(storage_index_numbered_and_other_keys)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena arena;
    cki_trec r;
    char key[32];
    cki_tstorage *s0, *far, *lead, *seven, *view;
    cki_arena_init(&arena, ctx);
    cki_trec_init(&r, ctx, &arena, "f.pt", "data.pkl");

    /* a number far past the count goes to the map; the same number later,
     * when the count would let it into the slots, must still be found */
    CHECK((far = add(&r, "100000", NULL, 3)) != NULL);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "%d", i);
        CHECK(add(&r, key, NULL, (uint64_t)i + 1) != NULL);
    }
    CHECK(r.storage_by_num_cap > 0 && r.storage_by_num_cap <= 8192);
    s0 = cki_trec_find_storage(&r, "0");
    CHECK(s0 && s0->numel == 1 && !strcmp(s0->key, "0"));
    CHECK(cki_trec_find_storage(&r, "2999") && cki_trec_find_storage(&r, "2999")->numel == 3000);
    CHECK(cki_trec_find_storage(&r, "100000") == far);
    CHECK(add(&r, "100000", NULL, 3) == far); /* the same storage, not a second one */
    CHECK(add(&r, "5", NULL, 6) == cki_trec_find_storage(&r, "5"));

    /* "07" and "+7" are other keys than "7" */
    CHECK((lead = add(&r, "07", NULL, 9)) != NULL);
    seven = cki_trec_find_storage(&r, "7");
    CHECK(seven && seven != lead && seven->numel == 8);
    CHECK(cki_trec_find_storage(&r, "07") == lead);
    CHECK(cki_trec_find_storage(&r, "+7") == NULL);
    CHECK(cki_trec_find_storage(&r, "3000") == NULL);
    CHECK(cki_trec_find_storage(&r, "99999999999999999999") == NULL);

    /* a view of "7" is its own storage, in the map */
    CHECK((view = add(&r, "7", "1", 2)) != NULL && view != seven && view->is_view);
    CHECK(add(&r, "7", "1", 2) == view);
    CHECK(cki_trec_find_storage(&r, "7") == seven);

    /* a storage described again with another size is refused, from either place */
    CHECK(add(&r, "12", NULL, 99) == NULL);
    CHECK(strstr(ck_errmsg(ctx), "storage '12'") != NULL);
    CHECK(add(&r, "100000", NULL, 4) == NULL);

    cki_trec_drop_index(&r);
    CHECK(cki_trec_find_storage(&r, "0") == NULL && cki_trec_find_storage(&r, "07") == NULL);
    cki_trec_free(&r);
    cki_arena_free(&arena);
    ck_ctx_free(ctx);
}
