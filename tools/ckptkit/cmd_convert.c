/*
 * cmd_convert.c -- `ckptkit convert IN OUT`: any readable format to any
 * writable one, streaming tensor by tensor, with dtype policy, selection,
 * renaming, metadata, Stable Diffusion EMA handling, pruning and Hugging Face
 * sharding. OUT (or every shard and the index) appears only when complete.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cli.h"

static const char help[] =
    "usage: ckptkit convert IN OUT [OPTIONS]\n"
    "       ckptkit convert IN... -o DIR [-r] [-j N] [--skip-existing] [OPTIONS]\n\n"
    "Converts IN to OUT, tensor by tensor, in bounded memory. The output format\n"
    "comes from --to or OUT's extension (.safetensors, .pth/.pt/.bin, .ckpt).\n"
    "OUT is written to a temporary file beside it and renamed when complete.\n"
    "IN may be a sharded checkpoint: its *.index.json or the folder holding it.\n\n"
    "  --to FORMAT          safetensors | pth (pt, bin) | ckpt | raw | npz | npy | gguf\n"
    "  --dtype D            keep | f32 | f16 | bf16 | f64 | f8_e4m3 | f8_e5m2: cast floating\n"
    "                       tensors (ints and bools stay)\n"
    "  --dtype-exclude GLOB never cast these tensors (repeatable)\n"
    "  --force              replace an existing OUT\n"
    "  --key PATH           dotted path of the state dict inside a PyTorch checkpoint\n"
    "  --include GLOB       keep only matching tensors (repeatable)\n"
    "  --exclude GLOB       drop matching tensors (repeatable)\n"
    "  --strip-prefix P     remove P from the start of names (e.g. module.)\n"
    "  --rename OLD=NEW     replace the name prefix OLD by NEW (repeatable)\n"
    "  --add-prefix P       prepend P to every name\n"
    "  --metadata K=V       add or override a metadata entry (repeatable)\n"
    "  --ema                Stable Diffusion: write the EMA weights under the model's names\n"
    "                       (model.X takes the values of model_ema.X-without-dots) and drop\n"
    "                       every model_ema.* tensor; an error if IN has no EMA weights\n"
    "  --no-ema             drop every model_ema.* tensor\n"
    "  --prune              keep only the state dict: a .ckpt output holds state_dict alone\n"
    "                       (no epoch, global_step, version or metadata; optimizer states,\n"
    "                       lr schedulers, callbacks and loops are never written), and no\n"
    "                       output keeps the input's epoch/global_step/version metadata\n"
    "  --shard-size SIZE    split into Hugging Face shards of at most SIZE (5GB, 500MiB):\n"
    "                       OUT=dir/model.safetensors gives dir/model-00001-of-0000N.safetensors\n"
    "                       and dir/model.safetensors.index.json (safetensors and pth only;\n"
    "                       one shard is written as OUT itself)\n"
    "  --manifest M         JSON manifest describing a raw .bin input\n"
    "  --format F           skip detection and read IN as F\n"
    "  --no-crc             do not check CRC-32 of input zip members while copying\n"
    "  --unknown POLICY     PyTorch -> PyTorch without --prune rewrites the whole object tree\n"
    "                       (optimizer, schedulers, loops, callbacks, hyper-parameters kept;\n"
    "                       dangerous references removed); objects of classes torch's\n"
    "                       weights-only loader refuses become plain dicts (dict, the default),\n"
    "                       are removed (drop) or written back as they are (keep); each change\n"
    "                       is printed as 'path: class -> result'\n"
    "  --cast-all           with --dtype in such a rewrite, also cast the floating tensors\n"
    "                       outside the state dict (optimizer state...); 0-dim ones (Adam's\n"
    "                       step) never. Default: only the state dict is cast\n"
    "  --compress           npz output: deflate every member (numpy.savez_compressed)\n"
    "  --strict             npy/npz output: refuse BF16/F8 tensors (NumPy has no dtype for\n"
    "                       them) instead of writing them as ml_dtypes does, with a warning\n"
    "  --allow-expand       write an output whose tensor bytes exceed 16 x the input's size\n"
    "                       (a broadcast view, stride 0, written dense); refused otherwise\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "GGUF (llama.cpp, stable-diffusion.cpp; OUT ending in .gguf or --to gguf):\n"
    "  --dtype q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k  quantise with ggml's\n"
    "                       reference encoders, no importance matrix (the first five\n"
    "                       bit-exact with ggml and gguf-py). Policy: floating tensors with at least\n"
    "                       2 dimensions are quantised; 1-D tensors, names ending in 'bias'\n"
    "                       or '.scale' and names containing 'norm' keep their float type;\n"
    "                       ints and bools never change; already quantised tensors keep\n"
    "                       their type. A last dimension the block does not divide falls\n"
    "                       back as llama-quantize does (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,\n"
    "                       Q5_K -> Q5_1, Q6_K -> Q8_0, IQ -> IQ4_NL, then F16). NaN or Inf\n"
    "                       in a tensor to quantise is an error naming the element.\n"
    "                       Quantised input converts to F32 (or --dtype f16/bf16) for other\n"
    "                       formats and stays as is in GGUF output (--dtype keep).\n"
    "  --tensor-type REGEX=TYPE  give tensors whose input name matches REGEX (POSIX\n"
    "                       extended, searched) TYPE (f32, f16, bf16, q8_0, ...); the first\n"
    "                       matching rule wins and overrides the policy (repeatable)\n"
    "  --metadata general.alignment=N  align tensor data to N (a power of two; default 32)\n"
    "  --allow-long-names   write names longer than ggml's 63 bytes (for builds with a\n"
    "                       larger GGML_MAX_NAME, such as stable-diffusion.cpp's)\n"
    "  --big-endian         write a big-endian GGUF (ggml reads little-endian only)\n"
    "  --shard-size SIZE    split files STEM-00001-of-0000N.gguf (split.* keys, no index)\n"
    "  -q                   no warnings, no summary line\n"
    "Many files (each IN a file or a folder of checkpoints):\n"
    "  -o DIR               write DIR/NAME.EXT for each input, EXT from --to (default\n"
    "                       safetensors); goes on after a failure, ends with a table of\n"
    "                       converted, skipped and failed files; exit 1 if any failed\n"
    "  -r                   also the folders inside the folders given, structure kept\n"
    "  -j N                 N conversions at a time (default: the number of cores)\n"
    "  --skip-existing      leave an output that is newer than its input alone\n";

static int parse_dtype(const char *s, ck_dtype *out)
{
    if (!strcmp(s, "keep")) {
        *out = CK_DT_KEEP;
        return 0;
    }
    if (ck_dtype_parse(s, out) || !(ck_dtype_is_float(*out) || ck_dtype_is_quantized(*out)))
        return 1;
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    enum { O_TO = 256, O_DTYPE, O_DTEX, O_FORCE, O_KEY, O_INC, O_EXC, O_STRIP, O_RENAME, O_ADD,
           O_META, O_MANIFEST, O_FORMAT, O_NOCRC, O_EMA, O_NOEMA, O_PRUNE, O_SHARD,
           O_COMPRESS, O_STRICT, O_UNKNOWN, O_CASTALL, O_TTYPE, O_LONG, O_BE,
           O_EXPAND, O_SKIP };
    static const struct option lopts[] = {
        {"to", required_argument, 0, O_TO},
        {"dtype", required_argument, 0, O_DTYPE},
        {"dtype-exclude", required_argument, 0, O_DTEX},
        {"force", no_argument, 0, O_FORCE},
        {"key", required_argument, 0, O_KEY},
        {"include", required_argument, 0, O_INC},
        {"exclude", required_argument, 0, O_EXC},
        {"strip-prefix", required_argument, 0, O_STRIP},
        {"rename", required_argument, 0, O_RENAME},
        {"add-prefix", required_argument, 0, O_ADD},
        {"metadata", required_argument, 0, O_META},
        {"manifest", required_argument, 0, O_MANIFEST},
        {"format", required_argument, 0, O_FORMAT},
        {"no-crc", no_argument, 0, O_NOCRC},
        {"ema", no_argument, 0, O_EMA},
        {"no-ema", no_argument, 0, O_NOEMA},
        {"prune", no_argument, 0, O_PRUNE},
        {"shard-size", required_argument, 0, O_SHARD},
        {"allow-expand", no_argument, 0, O_EXPAND},
        {"skip-existing", no_argument, 0, O_SKIP},
        {"unknown", required_argument, 0, O_UNKNOWN},
        {"cast-all", no_argument, 0, O_CASTALL},
        {"compress", no_argument, 0, O_COMPRESS},
        {"strict", no_argument, 0, O_STRICT},
        {"tensor-type", required_argument, 0, O_TTYPE},
        {"allow-long-names", no_argument, 0, O_LONG},
        {"big-endian", no_argument, 0, O_BE},
        {"quiet", no_argument, 0, 'q'}, CLI_MAX_MEMORY_OPT, CLI_ALLOW_UNSAFE_OPT, CLI_SKIP_UNSUPPORTED_OPT,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    ck_convert_opts co;
    ck_convert_stats stats;
    cli_list dtex = {0}, inc = {0}, exc = {0}, ren = {0}, meta = {0}, ttype = {0};
    ck_ctx *ctx = NULL;
    ck_model *m = NULL;
    int c, rc = EXIT_DONE, recursive = 0, skip = 0, jobs = 0;
    const char *out_dir = NULL;
    double t0;

    memset(&oo, 0, sizeof oo);
    memset(&co, 0, sizeof co);
    co.dtype = CK_DT_KEEP;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hqo:rj:", lopts, NULL)) != -1) {
        switch (c) {
        case 'o': out_dir = optarg; break;
        case 'r': recursive = 1; break;
        case 'j':
            if (cli_parse_jobs("convert", optarg, &jobs)) return EXIT_USAGE;
            break;
        case O_SKIP: skip = 1; break;
        case O_TO: co.format = optarg; break;
        case O_DTYPE:
            if (parse_dtype(optarg, &co.dtype))
                return cli_usage_error("convert", "--dtype '%s': expected keep, f32, f16, bf16, "
                                       "f64, f8_e4m3, f8_e5m2 or a ggml type (q8_0, q4_0, "
                                       "q4_1, q5_0, q5_1, q2_k ... q6_k)", optarg);
            break;
        case O_DTEX: cli_list_add(&dtex, optarg); break;
        case O_FORCE: co.force = 1; break;
        case O_KEY: oo.key = optarg; break;
        case O_INC: cli_list_add(&inc, optarg); break;
        case O_EXC: cli_list_add(&exc, optarg); break;
        case O_STRIP: co.strip_prefix = optarg; break;
        case O_RENAME:
            if (!strchr(optarg, '='))
                return cli_usage_error("convert", "--rename '%s': expected OLD=NEW", optarg);
            cli_list_add(&ren, optarg);
            break;
        case O_ADD: co.add_prefix = optarg; break;
        case O_META:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_usage_error("convert", "--metadata '%s': expected KEY=VALUE", optarg);
            cli_list_add(&meta, optarg);
            break;
        case O_MANIFEST: oo.manifest = optarg; break;
        case O_FORMAT: oo.format = optarg; break;
        case O_NOCRC: co.no_crc = 1; break;
        case O_EMA:
        case O_NOEMA:
            if (co.ema && co.ema != (c == O_EMA ? 1 : -1))
                return cli_usage_error("convert", "--ema and --no-ema exclude each other");
            co.ema = c == O_EMA ? 1 : -1;
            break;
        case O_PRUNE: co.prune = 1; break;
        case O_COMPRESS: co.compress = 1; break;
        case O_STRICT: co.strict = 1; break;
        case O_EXPAND: co.allow_expand = 1; break;
        case O_SHARD:
            if (cli_parse_size(optarg, &co.shard_size))
                return cli_usage_error("convert", "--shard-size '%s': expected a size such as "
                                       "5GB, 500MiB or 1048576", optarg);
            break;
        case O_UNKNOWN:
            if (cli_parse_unknown(optarg, &co.unknown))
                return cli_usage_error("convert", "--unknown '%s': expected dict, drop or keep",
                                       optarg);
            break;
        case O_CASTALL: co.cast_all = 1; break;
        case O_TTYPE:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_usage_error("convert", "--tensor-type '%s': expected REGEX=TYPE",
                                       optarg);
            cli_list_add(&ttype, optarg);
            break;
        case O_LONG: co.allow_long_names = 1; break;
        case O_BE: co.big_endian = 1; break;
        case 'q': o.quiet = 1; break;
        case 'U': oo.allow_unsafe = 1; break;
        case 'S': oo.skip_unsupported = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "convert", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error("convert", "invalid option");
        }
    }
    co.dtype_exclude = dtex.v;
    co.include = inc.v;
    co.exclude = exc.v;
    co.rename = ren.v;
    co.metadata = meta.v;
    co.tensor_type = ttype.v;
    if (co.format && !ck_format_writer(co.format)) {
        char names[256] = "";
        for (size_t i = 0; ck_format_writer_name(i); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     ck_format_writer_name(i));
        return cli_usage_error("convert", "--to '%s': no such output format (formats: %s)",
                               co.format, names);
    }
    if (out_dir) {
        if (optind >= argc) return cli_usage_error("convert", "-o DIR: expected inputs");
        rc = batch_convert(argv + optind, argc - optind, out_dir, co.format, recursive, skip,
                           jobs ? jobs : batch_default_jobs(), &o, &oo, &co);
        goto done;
    }
    if (recursive || skip || jobs)
        return cli_usage_error("convert", "-r, -j and --skip-existing go with -o DIR");
    if (argc - optind != 2) return cli_usage_error("convert", "expected IN and OUT");
    /* CRCs of storages are checked while their bytes are copied (emit.c), in
     * the same pass; checking them at open would read the whole input twice */
    const char *in = argv[optind], *out = argv[optind + 1];
    if (!co.format && !ck_format_for_path(out))
        return cli_usage_error("convert", "cannot tell the output format of '%s' from its "
                               "extension; use --to", out);

    ctx = cli_ctx(&o);
    cli_rewrites rw = {NULL, "ckptkit: rewrote ", o.quiet, 0, 0};
    co.on_rewrite = cli_rewrite_line;
    co.rewrite_user = &rw;
    t0 = cli_now();
    if (ck_model_open(ctx, in, &oo, &m)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    cli_progress_begin(ctx, &o, "converting");
    if (ck_convert(ctx, m, out, &co, &stats)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    cli_progress_end();
    if (!o.quiet) {
        char b[32];
        const char *fmt = co.format ? co.format : ck_format_for_path(out);
        int gguf = fmt && !strcmp(fmt, "gguf");
        if (stats.shards > 1 && gguf)
            fprintf(stderr, "ckptkit: wrote %llu split files for %s",
                    (unsigned long long)stats.shards, out);
        else if (stats.shards > 1)
            fprintf(stderr, "ckptkit: wrote %llu shards + %s.index.json",
                    (unsigned long long)stats.shards, out);
        else
            fprintf(stderr, "ckptkit: wrote %s", out);
        fprintf(stderr, ": %llu tensors, %s in %.2f s", (unsigned long long)stats.tensors,
                cli_bytes(stats.bytes, b, sizeof b), cli_now() - t0);
        if (ck_dtype_is_quantized(co.dtype)) /* some fall back to other types: see "types" */
            fprintf(stderr, "; %llu converted for %s (policy fallbacks included), %llu values "
                    "overflowed to inf, %llu underflowed to zero",
                    (unsigned long long)stats.cast_tensors, ck_dtype_name(co.dtype),
                    (unsigned long long)stats.overflow, (unsigned long long)stats.underflow);
        else if (co.dtype != CK_DT_KEEP)
            fprintf(stderr, "; %llu cast to %s, %llu values overflowed to inf, %llu underflowed "
                    "to zero", (unsigned long long)stats.cast_tensors, ck_dtype_name(co.dtype),
                    (unsigned long long)stats.overflow, (unsigned long long)stats.underflow);
        if (ck_model_omitted_count(m))
            fprintf(stderr, "; %zu input array%s left out", ck_model_omitted_count(m),
                    ck_model_omitted_count(m) == 1 ? "" : "s");
        if (gguf || ck_dtype_is_quantized(co.dtype) || ttype.n) {
            int first = 1;
            fprintf(stderr, "; types:");
            for (int d = 0; d < CK_DT_COUNT; d++) {
                if (!stats.dtype_tensors[d]) continue;
                fprintf(stderr, "%s %s x %llu", first ? "" : ",", ck_dtype_name((ck_dtype)d),
                        (unsigned long long)stats.dtype_tensors[d]);
                first = 0;
            }
        }
        fputc('\n', stderr);
    }
done:
    cli_progress_end();
    ck_model_close(m);
    ck_ctx_free(ctx);
    cli_list_free(&dtex);
    cli_list_free(&inc);
    cli_list_free(&exc);
    cli_list_free(&ren);
    cli_list_free(&meta);
    cli_list_free(&ttype);
    return rc;
}
