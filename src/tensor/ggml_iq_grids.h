/*
 * ggml_iq_grids.h -- the codebooks of ggml's grid quantisation types
 * (generated into ggml_iq_grids.c by scripts/gen_iq_grids.py from gguf-py;
 * see that file for the packing). Each grid row is one uint16_t of level
 * indices: 2 bits per element for the 8-wide grids, 3 bits for the 4-wide.
 */
#ifndef CKI_GGML_IQ_GRIDS_H
#define CKI_GGML_IQ_GRIDS_H

#include <stdint.h>

extern const int8_t cki_iq2_levels[3];    /* IQ2_XXS, IQ2_XS, IQ2_S */
extern const int8_t cki_iq3xxs_levels[8];
extern const int8_t cki_iq3s_levels[8];
extern const int8_t cki_iq1_levels[3];    /* IQ1_S, IQ1_M */

extern const uint16_t cki_iq2xxs_grid[256]; /* 8 elements per row */
extern const uint16_t cki_iq2xs_grid[512];
extern const uint16_t cki_iq2s_grid[1024];
extern const uint16_t cki_iq3xxs_grid[256]; /* 4 elements per row */
extern const uint16_t cki_iq3s_grid[512];
extern const uint16_t cki_iq1s_grid[2048];  /* 8 elements per row */

#endif
