/*
 * verdict.c -- the global-reference verdict table (see verdict.h).
 *
 * A reference is the dotted path MODULE "." NAME. It is judged in order:
 *   1. malformed -> DANGEROUS: NULL, empty, "?" (unresolved STACK_GLOBAL), or
 *      any part that is not a run of [A-Za-z0-9_] / non-ASCII bytes (Python
 *      could not import it; such spellings are scanner-evasion attempts);
 *   2. Python 2 and torch spellings of the module are mapped (__builtin__,
 *      exceptions -> builtins, copy_reg -> copyreg, cPickle -> pickle,
 *      torch.tensor -> torch._tensor);
 *   3. an exact ALLOWED entry (single-part name) -> ALLOWED;
 *   4. DANGEROUS when the path starts (at a part boundary) with a dangerous
 *      module or module.name prefix (module names compared without case),
 *      or when a part of NAME is a dangerous builtin/function name, a core
 *      dangerous module name (torch.os, __main__.os.system), or a dunder
 *      attribute walk ("eval.__call__", "Tensor.__init__.__globals__");
 *   5. UNKNOWN.
 * No allocation: the mapped path is read through a small segment view.
 */
#include "verdict.h"

/* ---- the path view: prefix + rest-of-module + "." + name ---------------- */

typedef struct vpath {
    const char *seg[4];
    size_t len[4];
    size_t total;
} vpath;

static int path_char(const vpath *p, size_t i)
{
    for (int k = 0; k < 4; k++) {
        if (i < p->len[k]) return (unsigned char)p->seg[k][i];
        i -= p->len[k];
    }
    return -1;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 1 if the path starts with PREFIX and the next character ends a part. */
static int path_starts(const vpath *p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n > p->total) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(path_char(p, i)) != lower((unsigned char)prefix[i])) return 0;
    return n == p->total || path_char(p, n) == '.';
}

/* ---- tables --------------------------------------------------------------- */

static const char *const module_aliases[][2] = {
    {"__builtin__", "builtins"}, {"exceptions", "builtins"}, {"copy_reg", "copyreg"},
    {"cPickle", "pickle"},       {"torch.tensor", "torch._tensor"},
};

/* Whole modules (and their submodules) or module.name prefixes. */
static const char *const dangerous_prefixes[] = {
    /* processes, the interpreter, native code */
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "pty", "commands", "popen2",
    "platform", "signal", "resource", "_winapi", "msvcrt", "winreg", "_winreg", "ctypes",
    "_ctypes", "cffi", "multiprocessing", "_thread", "thread", "asyncio", "site",
    /* importing and running code */
    "importlib", "imp", "pkgutil", "zipimport", "runpy", "code", "codeop", "marshal", "pdb", "bdb",
    "timeit", "profile", "cProfile", "trace", "pydoc", "ensurepip", "pip", "venv", "distutils",
    "setuptools",
    /* nested unpicklers */
    "pickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "dbm",
    /* files */
    "shutil", "tempfile", "fileinput", "tarfile", "zipfile", "sqlite3", "_sqlite3", "mmap",
    "linecache", "io.open", "io.open_code", "io.FileIO", "_io.open", "_io.open_code",
    "_io.FileIO",
    /* network */
    "socket", "_socket", "ssl", "_ssl", "requests", "urllib", "urllib2", "urllib3", "http",
    "httplib", "httpx", "aiohttp", "ftplib", "smtplib", "telnetlib", "poplib", "imaplib",
    "nntplib", "xmlrpc", "xmlrpclib", "socketserver", "SocketServer", "BaseHTTPServer",
    "SimpleHTTPServer", "CGIHTTPServer", "webbrowser",
    /* builtins that evaluate, import, reach attributes or touch files */
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.getattr",
    "builtins.setattr", "builtins.delattr", "builtins.__import__", "builtins.globals",
    "builtins.locals", "builtins.vars", "builtins.input", "builtins.breakpoint", "builtins.apply",
    "builtins.execfile", "builtins.file", "builtins.reload", "builtins.help", "builtins.exit",
    "builtins.quit", "builtins.__build_class__", "builtins.__loader__", "builtins.__spec__",
    /* call anything / reach any attribute */
    "operator.attrgetter", "operator.methodcaller", "operator.itemgetter", "operator.call",
    "_operator.attrgetter", "_operator.methodcaller", "_operator.itemgetter", "_operator.call",
    "types.CodeType", "types.FunctionType", "types.LambdaType", "types.MethodType",
    "types.new_class", "logging.config",
    /* torch: loading, compiling, running code */
    "torch.load", "torch.save", "torch.compile", "torch.from_file", "torch.jit", "torch.hub",
    "torch._inductor", "torch._dynamo", "torch.utils.cpp_extension", "torch.utils.benchmark",
    "torch.ops", "torch._ops", "torch.classes", "torch._classes", "torch.package", "torch.fx",
    "torch._C", "torch.export", "torch._export", "torch.distributed.rpc", "torch.multiprocessing",
    "torch.testing._internal", "torch.storage._load_from_bytes", "torch.serialization",
    "torch._utils._import_dotted_name", "torch.library",
    /* numpy: files, pickles, native code, code strings */
    "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt",
    "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "numpy.memmap", "numpy.DataSource",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio",
    "numpy.lib.format", "numpy.lib._datasource", "numpy.lib._npyio_impl",
    /* other loaders that unpickle or evaluate */
    "pandas.read_pickle", "pandas.io", "yaml.load", "yaml.load_all", "yaml.unsafe_load",
    "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
};

/* A part of NAME equal to one of these is dangerous whatever the module. */
static const char *const dangerous_name_parts[] = {
    /* functions */
    "eval", "exec", "execfile", "compile", "open", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "breakpoint", "apply", "system", "popen", "spawn", "spawnv", "spawnve",
    "execv", "execve", "execvp", "execl", "fork", "import_module", "_import_dotted_name",
    "load_module", "exec_module", "run_path", "run_module", "_run_code", "fromfile", "tofile",
    "loadtxt", "memmap", "read_pickle", "from_file",
    /* attributes that lead out of any object */
    "__builtins__", "__loader__", "__spec__", "__dict__", "__globals__", "__subclasses__",
    "__getattribute__", "__code__", "__closure__", "__class__", "__bases__", "__mro__",
    /* core dangerous modules reached as attributes (torch.os, __main__.sys) */
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "pty",
    "socket", "ctypes", "importlib", "runpy", "marshal", "pickle", "_pickle", "cPickle", "dill",
    "shelve", "webbrowser", "multiprocessing", "commands", "popen2", "_posixsubprocess",
};

typedef struct allowed_entry {
    const char *module;
    const char *name;
} allowed_entry;

static const allowed_entry allowed[] = {
    {"torch._utils", "_rebuild_tensor"},
    {"torch._utils", "_rebuild_tensor_v2"},
    {"torch._utils", "_rebuild_tensor_v3"},
    {"torch._utils", "_rebuild_parameter"},
    {"torch._utils", "_rebuild_parameter_with_state"},
    {"torch._utils", "_rebuild_qtensor"},
    {"torch._utils", "_rebuild_sparse_tensor"},
    {"torch._utils", "_rebuild_meta_tensor_no_storage"},
    {"torch._tensor", "_rebuild_from_type_v2"},
    {"torch.serialization", "_get_layout"},
    {"torch", "Size"},
    {"torch", "device"},
    {"torch", "Tensor"},
    {"torch.storage", "UntypedStorage"},
    {"torch.nn.parameter", "Parameter"},
    {"collections", "OrderedDict"},
    {"collections", "defaultdict"},
    {"collections", "Counter"},
    {"argparse", "Namespace"},
    {"builtins", "set"},
    {"builtins", "frozenset"},
    {"builtins", "slice"},
    {"builtins", "complex"},
    {"builtins", "bytearray"},
    {"builtins", "bytes"},
    {"builtins", "list"},
    {"builtins", "dict"},
    {"builtins", "tuple"},
    {"builtins", "int"},
    {"builtins", "float"},
    {"builtins", "bool"},
    {"builtins", "str"},
    {"_codecs", "encode"},
    {"numpy.core.multiarray", "scalar"},
    {"numpy.core.multiarray", "_reconstruct"},
    {"numpy._core.multiarray", "scalar"},
    {"numpy._core.multiarray", "_reconstruct"},
    {"numpy", "dtype"},
    {"numpy", "ndarray"},
};

/* Storage classes: torch.<X>Storage and torch.cuda.<X>Storage (old GPU saves). */
static const char *const storage_stems[] = {
    "Double", "Float", "Half", "Long", "Int", "Short", "Char", "Byte", "Bool", "BFloat16",
    "ComplexDouble", "ComplexFloat", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4",
    "Untyped", "Typed",
};

/* Attributes of the torch module that are plain constants: dtypes, layouts,
 * quantization schemes, memory formats. */
static const char *const torch_constants[] = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32", "chalf",
    "complex64", "cfloat", "complex128", "cdouble", "uint8", "int8", "int16", "short", "int32",
    "int", "int64", "long", "bool", "quint8", "qint8", "qint32", "quint4x2", "quint2x4",
    "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "uint16", "uint32", "uint64", "bits8", "bits16", "bits1x8", "bits2x4",
    "bits4x2", "int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3",
    "uint4", "uint5", "uint6", "uint7",
    "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "_mkldnn",
    "jagged",
    "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "contiguous_format", "channels_last", "channels_last_3d", "preserve_format",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- rules ------------------------------------------------------------------- */

/* 1 if S is one or more non-empty parts of identifier bytes joined by dots. */
static int dotted_name(const char *s)
{
    int part_len = 0;
    if (!s || !*s) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '.') {
            if (!part_len) return 0;
            part_len = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '_' || *p >= 0x80) {
            part_len++;
        } else {
            return 0;
        }
    }
    return part_len > 0;
}

static int storage_name(const char *name)
{
    size_t n = strlen(name);
    if (n <= 7 || strcmp(name + n - 7, "Storage")) return 0;
    for (size_t i = 0; i < COUNT(storage_stems); i++)
        if (strlen(storage_stems[i]) == n - 7 && !memcmp(name, storage_stems[i], n - 7)) return 1;
    return 0;
}

/* MOD is the mapped module as PREFIX + REST. */
static int is_allowed(const char *prefix, const char *rest, const char *name)
{
    size_t plen = strlen(prefix);
    char mod[64];
    if (strchr(name, '.')) return 0;
    if (plen + strlen(rest) >= sizeof mod) return 0; /* no allowed module is this long */
    memcpy(mod, prefix, plen);
    strcpy(mod + plen, rest);
    for (size_t i = 0; i < COUNT(allowed); i++)
        if (!strcmp(mod, allowed[i].module) && !strcmp(name, allowed[i].name)) return 1;
    if ((!strcmp(mod, "torch") || !strcmp(mod, "torch.cuda")) && storage_name(name)) return 1;
    if (!strcmp(mod, "torch"))
        for (size_t i = 0; i < COUNT(torch_constants); i++)
            if (!strcmp(name, torch_constants[i])) return 1;
    return 0;
}

/* Rule 4 on the NAME parts. */
static int dangerous_name(const char *name)
{
    size_t part = 0;
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (part > 0 && n >= 2 && s[0] == '_' && s[1] == '_') return 1; /* attribute walk */
        for (size_t i = 0; i < COUNT(dangerous_name_parts); i++)
            if (strlen(dangerous_name_parts[i]) == n && !memcmp(s, dangerous_name_parts[i], n))
                return 1;
        part++;
        s += n + (dot != NULL);
    }
    return 0;
}

ck_verdict cki_global_verdict(const char *module, const char *name)
{
    const char *prefix = "", *rest;
    vpath p;
    if (!dotted_name(module) || !dotted_name(name)) return CK_VERDICT_DANGEROUS;
    rest = module;
    for (size_t i = 0; i < COUNT(module_aliases); i++) {
        size_t n = strlen(module_aliases[i][0]);
        if (!strncmp(module, module_aliases[i][0], n) && (module[n] == 0 || module[n] == '.')) {
            prefix = module_aliases[i][1];
            rest = module + n;
            break;
        }
    }
    if (is_allowed(prefix, rest, name)) return CK_VERDICT_ALLOWED;

    p.seg[0] = prefix;
    p.len[0] = strlen(prefix);
    p.seg[1] = rest;
    p.len[1] = strlen(rest);
    p.seg[2] = ".";
    p.len[2] = 1;
    p.seg[3] = name;
    p.len[3] = strlen(name);
    p.total = p.len[0] + p.len[1] + p.len[2] + p.len[3];
    for (size_t i = 0; i < COUNT(dangerous_prefixes); i++)
        if (path_starts(&p, dangerous_prefixes[i])) return CK_VERDICT_DANGEROUS;
    if (dangerous_name(name)) return CK_VERDICT_DANGEROUS;
    /* pandas readers and writers open files and URLs: read_csv anywhere,
     * DataFrame.to_pickle as a method (a plain to_offset is harmless) */
    if (path_starts(&p, "pandas")) {
        size_t part = 0;
        for (const char *s = name; s; part++) {
            const char *dot = strchr(s, '.');
            if (!strncmp(s, "read_", 5) || (part > 0 && !strncmp(s, "to_", 3)))
                return CK_VERDICT_DANGEROUS;
            s = dot ? dot + 1 : NULL;
        }
    }
    return CK_VERDICT_UNKNOWN;
}

const char *cki_verdict_name(ck_verdict v)
{
    switch (v) {
    case CK_VERDICT_ALLOWED: return "allowed";
    case CK_VERDICT_UNKNOWN: return "unknown";
    case CK_VERDICT_DANGEROUS: return "dangerous";
    }
    return "dangerous";
}
