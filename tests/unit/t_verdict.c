/*
 * t_verdict.c -- the global-verdict table: what ckptkit recognises, what can
 * run code, and the spellings (Python 2 names, dotted attribute chains,
 * submodules, malformed names) that must not slip from one to the other.
 */
#include "common/cki.h"
#include "pickle/verdict.h"
#include "t.h"

typedef struct vcase {
    const char *module, *name;
    ck_verdict want;
} vcase;

static int check_cases(const vcase *c, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        ck_verdict got = cki_global_verdict(c[i].module, c[i].name);
        if (got != c[i].want) {
            fprintf(stderr, "  %s . %s: %s, expected %s\n", c[i].module ? c[i].module : "(null)",
                    c[i].name ? c[i].name : "(null)", cki_verdict_name(got),
                    cki_verdict_name(c[i].want));
            bad++;
        }
    }
    return bad;
}

#define A CK_VERDICT_ALLOWED
#define U CK_VERDICT_UNKNOWN
#define D CK_VERDICT_DANGEROUS
#define N(a) (sizeof(a) / sizeof((a)[0]))

TEST(verdict_allowed_torch)
{
    static const vcase c[] = {
        {"torch._utils", "_rebuild_tensor", A},
        {"torch._utils", "_rebuild_tensor_v2", A},
        {"torch._utils", "_rebuild_tensor_v3", A},
        {"torch._utils", "_rebuild_parameter", A},
        {"torch._utils", "_rebuild_parameter_with_state", A},
        {"torch._utils", "_rebuild_qtensor", A},
        {"torch._utils", "_rebuild_sparse_tensor", A},
        {"torch._utils", "_rebuild_meta_tensor_no_storage", A},
        {"torch._tensor", "_rebuild_from_type_v2", A},
        {"torch.tensor", "_rebuild_from_type_v2", A}, /* old module name */
        {"torch.serialization", "_get_layout", A},
        {"torch", "FloatStorage", A},
        {"torch", "DoubleStorage", A},
        {"torch", "HalfStorage", A},
        {"torch", "BFloat16Storage", A},
        {"torch", "ComplexFloatStorage", A},
        {"torch", "ComplexDoubleStorage", A},
        {"torch", "QInt8Storage", A},
        {"torch", "QUInt4x2Storage", A},
        {"torch", "UntypedStorage", A},
        {"torch.storage", "UntypedStorage", A}, /* what torch >= 2.3 writes */
        {"torch.storage", "TypedStorage", U},
        {"torch", "TypedStorage", A},
        {"torch", "BoolStorage", A},
        {"torch.cuda", "FloatStorage", A},
        {"torch", "float32", A},
        {"torch", "bfloat16", A},
        {"torch", "float8_e4m3fn", A},
        {"torch", "uint64", A},
        {"torch", "complex32", A},
        {"torch", "bits4x2", A},
        {"torch", "Size", A},
        {"torch", "device", A},
        {"torch", "Tensor", A},
        {"torch.nn.parameter", "Parameter", A},
        {"torch", "sparse_coo", A},
        {"torch", "per_tensor_affine", A},
        {"torch", "per_channel_affine_float_qparams", A},
        {"torch", "channels_last", A},
    };
    CHECK(check_cases(c, N(c)) == 0);
}

TEST(verdict_allowed_python_numpy)
{
    static const vcase c[] = {
        {"collections", "OrderedDict", A},
        {"collections", "defaultdict", A},
        {"collections", "Counter", A},
        {"argparse", "Namespace", A},
        {"builtins", "set", A},
        {"builtins", "frozenset", A},
        {"builtins", "slice", A},
        {"builtins", "complex", A},
        {"builtins", "bytearray", A},
        {"builtins", "bytes", A},
        {"builtins", "list", A},
        {"builtins", "dict", A},
        {"builtins", "tuple", A},
        {"builtins", "int", A},
        {"builtins", "float", A},
        {"builtins", "bool", A},
        {"builtins", "str", A},
        {"__builtin__", "set", A}, /* Python 2 spelling */
        {"_codecs", "encode", A},
        {"numpy.core.multiarray", "scalar", A},
        {"numpy.core.multiarray", "_reconstruct", A},
        {"numpy._core.multiarray", "scalar", A},
        {"numpy._core.multiarray", "_reconstruct", A},
        {"numpy", "dtype", A},
        {"numpy", "ndarray", A},
    };
    CHECK(check_cases(c, N(c)) == 0);
}

TEST(verdict_dangerous_modules_and_builtins)
{
    static const vcase c[] = {
        {"os", "system", D},
        {"posix", "system", D},
        {"nt", "system", D},
        {"os.path", "join", D}, /* submodule of a dangerous module */
        {"subprocess", "Popen", D},
        {"subprocess", "check_output", D},
        {"sys", "modules", D},
        {"shutil", "rmtree", D},
        {"pty", "spawn", D},
        {"socket", "create_connection", D},
        {"ssl", "get_server_certificate", D},
        {"requests.api", "get", D},
        {"requests", "post", D},
        {"urllib.request", "urlopen", D},
        {"http.client", "HTTPSConnection", D},
        {"ctypes", "CDLL", D},
        {"importlib", "import_module", D},
        {"runpy", "_run_code", D},
        {"code", "InteractiveInterpreter", D},
        {"codeop", "compile_command", D},
        {"marshal", "loads", D},
        {"pickle", "loads", D},
        {"_pickle", "loads", D},
        {"dill", "loads", D},
        {"shelve", "open", D},
        {"webbrowser", "open", D},
        {"multiprocessing.util", "spawnv_passfds", D},
        {"asyncio.subprocess", "create_subprocess_shell", D},
        {"builtins", "eval", D},
        {"builtins", "exec", D},
        {"builtins", "compile", D},
        {"builtins", "open", D},
        {"builtins", "getattr", D},
        {"builtins", "setattr", D},
        {"builtins", "delattr", D},
        {"builtins", "__import__", D},
        {"builtins", "globals", D},
        {"builtins", "locals", D},
        {"builtins", "vars", D},
        {"builtins", "input", D},
        {"builtins", "breakpoint", D},
        {"builtins", "apply", D},
        {"builtins", "execfile", D},
        {"builtins", "file", D},
        {"builtins", "reload", D},
        {"operator", "attrgetter", D},
        {"operator", "methodcaller", D},
        {"operator", "itemgetter", D},
        {"_operator", "attrgetter", D},
        {"types", "CodeType", D},
        {"types", "FunctionType", D},
        {"timeit", "timeit", D},
        {"pydoc", "pipepager", D},
        {"yaml", "unsafe_load", D},
        {"pandas", "read_pickle", D},
        {"pandas.io.pickle", "read_pickle", D},
        {"pandas.core.frame", "DataFrame.to_pickle", D},
    };
    CHECK(check_cases(c, N(c)) == 0);
}

TEST(verdict_dangerous_torch_numpy)
{
    static const vcase c[] = {
        {"torch", "load", D},
        {"torch", "save", D},
        {"torch.serialization", "load", D},
        {"torch.serialization", "_load", D},
        {"torch.jit", "load", D},
        {"torch.jit._script", "RecursiveScriptModule", D},
        {"torch.hub", "load", D},
        {"torch._inductor.codecache", "compile_file", D},
        {"torch.utils.cpp_extension", "load_inline", D},
        {"torch.ops", "aten", D},
        {"torch._ops", "ops", D},
        {"torch.storage", "_load_from_bytes", D},
        {"torch", "from_file", D},
        {"torch", "UntypedStorage.from_file", D}, /* allowed class, dangerous attribute */
        {"torch.fx.graph_module", "reduce_graph_module", D},
        {"torch._utils", "_import_dotted_name", D},
        {"torch.distributed.rpc", "rpc_sync", D},
        {"numpy", "load", D},
        {"numpy.lib.npyio", "load", D},
        {"numpy", "fromfile", D},
        {"numpy.core.multiarray", "fromfile", D},
        {"numpy.testing._private.utils", "runstring", D},
        {"numpy.ctypeslib", "load_library", D},
        {"numpy.f2py", "compile", D},
    };
    CHECK(check_cases(c, N(c)) == 0);
}

TEST(verdict_spellings_do_not_slip)
{
    static const vcase c[] = {
        /* Python 2 names */
        {"__builtin__", "eval", D},
        {"__builtin__", "getattr", D},
        {"exceptions", "eval", D},
        {"cPickle", "loads", D},
        {"commands", "getoutput", D},
        {"popen2", "popen3", D},
        {"urllib2", "urlopen", D},
        {"httplib", "HTTPConnection", D},
        {"thread", "start_new_thread", D},
        /* attribute chains in the name (protocol 4 getattr walks) */
        {"builtins", "eval.__call__", D},
        {"builtins", "set.__init__.__globals__", D},
        {"torch", "Tensor.__reduce_ex__.__globals__", D},
        {"collections", "OrderedDict.__class__", D},
        {"torch", "os.system", D},
        {"torch", "os", D},
        {"__main__", "os.system", D},
        {"__main__", "sys", D},
        {"numpy", "testing.runstring", D},
        {"torch", "jit.load", D},
        {"torch", "serialization.load", D},
        {"my.module", "__builtins__", D},
        /* module names compared without case */
        {"OS", "system", D},
        {"Subprocess", "run", D},
        /* unresolved and malformed references */
        {"?", "?", D},
        {"os", "?", D},
        {"", "eval", D},
        {"builtins", "", D},
        {NULL, "x", D},
        {"m", NULL, D},
        {" os", "system", D},
        {"os ", "system", D},
        {"torch._utils", "_rebuild_tensor ", D},
        {"torch..utils", "_rebuild_tensor", D},
        {".torch", "Size", D},
        {"torch", "Size.", D},
        {"torch/_utils", "_rebuild_tensor", D},
        {"torch\n_utils", "x", D},
        /* near misses of allowed names are not allowed */
        {"torch", "FloatStorag", U},
        {"torch", "floatstorage", U},
        {"torch.nn", "Parameter", U},
        {"torch._utils", "_rebuild_device_tensor_from_numpy", U},
        {"collections", "OrderedDict2", U},
        {"torch", "Storage", U},
    };
    CHECK(check_cases(c, N(c)) == 0);
}

TEST(verdict_unknown_stays_unknown)
{
    /* classes seen in real checkpoints that are neither recognised nor able
     * to run code by being referenced */
    static const vcase c[] = {
        {"copyreg", "_reconstructor", U},
        {"copy_reg", "_reconstructor", U},
        {"builtins", "object", U},
        {"functools", "partial", U},
        {"torch.optim.adam", "Adam", U},
        {"torch.nn.modules.loss", "MSELoss", U},
        {"torchmetrics.collections", "MetricCollection", U},
        {"pytorch_lightning.utilities.parsing", "AttributeDict", U},
        {"pandas._libs.tslibs.offsets", "Day", U},
        {"pandas._libs.tslibs.offsets", "to_offset", U},
        {"pandas.core.indexes.base", "_new_Index", U},
        {"pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked", U},
        {"numpy.random._pickle", "__randomstate_ctor", U},
        {"numpy", "float64", U},
        {"torch.distributed._sharded_tensor", "state_dict_hook", U},
        {"fsspec.implementations.local", "LocalFileSystem", U},
        {"darts.timeseries", "TimeSeries", U},
        {"builtins", "range", U},
        {"codecs", "encode", U},
        {"types", "SimpleNamespace", U},
        {"io", "BytesIO", U},
        {"osmium", "Thing", U}, /* a prefix of the letters is not a prefix of the path */
        {"systems", "x", U},
        {"codecs2", "y", U},
        {"torch", "_C_like", U},
    };
    CHECK(check_cases(c, N(c)) == 0);
    CHECK(!strcmp(cki_verdict_name(CK_VERDICT_ALLOWED), "allowed"));
    CHECK(!strcmp(cki_verdict_name(CK_VERDICT_UNKNOWN), "unknown"));
    CHECK(!strcmp(cki_verdict_name(CK_VERDICT_DANGEROUS), "dangerous"));
}

TEST(verdict_long_names_are_safe)
{
    char mod[600], name[600];
    memset(mod, 'a', sizeof mod - 1);
    mod[sizeof mod - 1] = 0;
    memset(name, 'b', sizeof name - 1);
    name[sizeof name - 1] = 0;
    CHECK(cki_global_verdict(mod, name) == CK_VERDICT_UNKNOWN);
    memcpy(mod, "os.", 3);
    CHECK(cki_global_verdict(mod, name) == CK_VERDICT_DANGEROUS);
}
