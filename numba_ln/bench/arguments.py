"""``python -m numba_ln.bench``'s arguments: the parser, and the checks that run before
anything is timed (a mistake costs no benchmark run; each fails like argparse's own: a
usage line, exit status 2)."""
import argparse
import os
import re
import shutil
import textwrap

import numba

from .base import missing
from .cases import CASE_BY_NAME, CASES, FUNCTIONS, cases_for
from .contenders import LIBRARIES, LINES, NUMBA_LN, PEERS

QUICK = {"rounds": 3, "batch_ms": 4.0, "warmup_ms": 2.0, "startup_repeats": 2}
# --quick measures these (function: cases) unless --cases is given: every regime once, at
# sizes whose contenders take milliseconds, so that the run takes about 30 s.
QUICK_CASES = {
    "layer_norm": ("1x768", "8x4096", "4096x768", "4096x1024", "65536x64", "1x4194304",
                   "4096x1024-f64"),
    "rms_norm": ("1x768", "4096x1024"),
    "add_layer_norm": ("1x768", "4096x1024"),
    "add_rms_norm": ("4096x1024",),
}
FULL = {"rounds": 15, "batch_ms": 25.0, "warmup_ms": 5.0, "startup_repeats": 5}
CHOOSABLE = NUMBA_LN + PEERS  # --libraries; the speed-line copies always run
# The modes that run something other than the forward suite, and the options each one reads.
# One mode at a time; any other option given with a mode is an error rather than silently
# ignored.  (The forward suite, no mode, reads every option.)
MODE_OPTIONS = {
    "--device cuda": ("--cases", "--rounds", "--quick", "--json"),
    "--dask": ("--rounds", "--quick", "--small", "--json"),
    "--backward": ("--cases", "--functions", "--threads", "--rounds", "--batch-ms",
                   "--warmup-ms", "--quick", "--small", "--no-targets", "--json"),
    "--half": ("--threads", "--rounds", "--batch-ms", "--warmup-ms", "--quick", "--small",
               "--no-targets", "--json"),
    "--latency": ("--threads", "--rounds", "--batch-ms", "--quick", "--json"),
}
OPTIONS = ("--quick", "--cases", "--functions", "--libraries", "--threads", "--rounds",
           "--batch-ms", "--warmup-ms", "--small", "--no-targets", "--json", "--plot")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps option help at spaces only: case and library names stay whole."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False,
                             break_long_words=False)


def _and(items):
    """"a, b and c"."""
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def _honours(mode):
    """"honours --a, --b and --c" for a mode's help, from MODE_OPTIONS."""
    return f"honours {_and(MODE_OPTIONS[mode])} (no other option)"


def parser():
    cases = "\n".join(f"  {c.name:<20} {c.describe()}: {', '.join(c.functions)}"
                      + (f"  [{c.note}]" if c.note else "") for c in CASES)
    p = argparse.ArgumentParser(
        prog="python -m numba_ln.bench",
        description="Benchmark numba_ln against NumPy, PyTorch and onnxruntime as fractions "
                    "of the speed line (a copy of the same bytes), and check the project's "
                    "performance targets.",
        formatter_class=_Formatter,
        epilog=f"cases (name, shape, functions that run at it):\n{cases}\n\n"
               "Results are printed to stdout, progress to stderr.",
    )
    p.add_argument("--quick", action="store_true",
                   help="about 30 s in all: 3 short rounds, and (unless --cases is given) "
                        "only these cases: " + "; ".join(f"{f} {', '.join(c)}"
                                                        for f, c in QUICK_CASES.items()))
    p.add_argument("--cases", help="comma-separated case names (default: all; see below)")
    p.add_argument("--functions",
                   help="comma-separated (default: all), from " + ", ".join(FUNCTIONS))
    p.add_argument("--libraries",
                   help="comma-separated contenders (default all; the speed-line copies always "
                        "run): " + ", ".join(CHOOSABLE))
    p.add_argument("--threads", type=int,
                   help="threads for numba_ln (numba.set_num_threads) and the peers "
                        "(default: numba's current count, NUMBA_NUM_THREADS)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per case (at least 1)")
    p.add_argument("--batch-ms", type=float,
                   help="timed batch length per contender per round (more than 0)")
    p.add_argument("--warmup-ms", type=float,
                   help="warm-up length before each timed batch (0 or more)")
    p.add_argument("--small", action="store_true",
                   help="use each case's reduced shape (smoke test, not a measurement)")
    p.add_argument("--no-targets", action="store_true",
                   help="skip the target checks and their extra measurements (thread scaling "
                        "and start-up subprocesses)")
    p.add_argument("--json", metavar="FILE", help="save all results as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="bar chart of fraction of speed line (any format matplotlib writes: "
                        "png, pdf, svg, ...)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: run numba_ln.cuda.bench instead; " + _honours("--device cuda"))
    p.add_argument("--dask", action="store_true",
                   help="run the dask cases instead (numba_ln on dask arrays against dask's "
                        "own expression on LocalCluster(n_workers=1, threads_per_worker=2, "
                        "processes=False); see numba_ln.bench.dask_cases); "
                        + _honours("--dask"))
    p.add_argument("--backward", action="store_true",
                   help="run the backward cases instead (layer_norm_backward and "
                        "rms_norm_backward against torch's native_layer_norm_backward and "
                        "autograd of F.rms_norm, the NumPy formula and a line 1.5x the "
                        "forward's; see numba_ln.bench.backward_cases); "
                        + _honours("--backward"))
    p.add_argument("--half", action="store_true",
                   help="run the 16-bit cases instead (layer_norm on bfloat16 and float16 "
                        "against torch in that dtype, NumPy through float32 and onnxruntime "
                        "float16, as fractions of a 16-bit copy; see "
                        "numba_ln.bench.half_cases); " + _honours("--half"))
    p.add_argument("--latency", action="store_true",
                   help="measure per-call time instead: the argument forms users write "
                        "(NumPy-scalar eps, float64 weights, return_stats, another axis, the "
                        "module, 16-bit, fused, backward) at (1, 768) and (64, 1024), in us "
                        "and as a ratio to torch; see numba_ln.bench.latency; "
                        + _honours("--latency"))
    return p


def checked(argv=None):
    """(parser, args, mode) of a command line whose every check passed (mode: one of
    MODE_OPTIONS, or None for the forward suite)."""
    p = parser()
    args = p.parse_args(argv)
    mode = mode_of(p, args)
    check_numbers(p, args)
    check_outputs(p, args)
    return p, args, mode


def given(args, option):
    """Whether ``option`` ("--batch-ms") was given (store_true flags: set)."""
    value = getattr(args, option[2:].replace("-", "_"))
    return value is not None and value is not False


def mode_of(p, args):
    """The one mode of MODE_OPTIONS given, or None for the forward suite; an error when two
    are given, or when an option is given that the mode does not read."""
    modes = [m for m in MODE_OPTIONS
             if (args.device == "cuda" if m == "--device cuda" else given(args, m))]
    if len(modes) > 1:
        p.error(f"{modes[0]} and {modes[1]} cannot be combined: they are different runs; "
                "choose one")
    if not modes:
        return None
    ignored = [o for o in OPTIONS if given(args, o) and o not in MODE_OPTIONS[modes[0]]]
    if ignored:
        p.error(f"{_and(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to "
                f"{modes[0]}, which {_honours(modes[0])}")
    return modes[0]


def check_numbers(p, args):
    """--rounds, --batch-ms, --warmup-ms and --threads in range (when given)."""
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    # A batch of 0 ms or less would be a single call (timing.measure calibrates batches to
    # at least one call): noise, not a measurement.  The checks are written so that NaN,
    # for which every comparison is false, fails them too.
    if args.batch_ms is not None and not 0 < args.batch_ms < float("inf"):
        p.error(f"--batch-ms must be a positive number of milliseconds (got {args.batch_ms:g})")
    if args.warmup_ms is not None and not 0 <= args.warmup_ms < float("inf"):
        p.error(f"--warmup-ms must be 0 or more milliseconds (got {args.warmup_ms:g})")
    if args.threads is not None and not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        p.error(f"--threads must be between 1 and NUMBA_NUM_THREADS="
                f"{numba.config.NUMBA_NUM_THREADS} (set that variable to allow more)")


def plot_formats(p):
    """The file extensions matplotlib can save to (what ``--plot``'s name must end with)."""
    if missing("matplotlib"):
        p.error("--plot needs matplotlib (pip install 'numba_ln[bench]')")
    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    formats = set(FigureCanvasBase.get_supported_filetypes())
    # pgf is LaTeX source that matplotlib writes by running LaTeX: offered only where the
    # LaTeX it runs is installed (else the plot failed after the whole run)
    if shutil.which(matplotlib.rcParams["pgf.texsystem"]) is None:
        formats.discard("pgf")
    return sorted(formats)


def check_output(p, option, path):
    """``path`` can be written: an error (before the run, not after it) when its folder is
    missing or read-only, or when it is a folder itself."""
    if not path:
        p.error(f"{option}: no file name given")
    folder = os.path.dirname(os.path.abspath(path))
    # (a name ending in a separator names a folder, existing or not: abspath drops the
    # separator, and the check below would look at its parent)
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        p.error(f"{option} {path}: is a folder; give a file name")
    if not os.path.isdir(folder):
        p.error(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        p.error(f"{option} {path}: the folder {folder} is not writable")


def check_outputs(p, args):
    if args.json is not None:
        check_output(p, "--json", args.json)
    if args.plot is not None:
        check_output(p, "--plot", args.plot)
        extension = os.path.splitext(args.plot)[1][1:].lower()
        formats = plot_formats(p)
        if extension not in formats:
            problem = (f"matplotlib cannot write .{extension}" if extension
                       else "the name has no extension")
            p.error(f"--plot {args.plot}: {problem}; end the name with one of "
                    f"{', '.join(formats)}")


def split_names(p, option, text):
    """The comma-separated names of ``option`` in order, each once (None: not given)."""
    if text is None:
        return None
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        p.error(f"{option}: no name given; leave the option out to run all")
    return names


def known_names(p, option, text, valid, what):
    """split_names, and an error naming the unknown ones and listing ``valid`` when a name
    is not in ``valid``."""
    names = split_names(p, option, text)
    unknown = [n for n in names or () if n not in valid]
    if unknown:
        p.error(f"{option}: unknown {what} {', '.join(unknown)}; choose from "
                f"{', '.join(valid)}")
    return names


def cuda_cases(p, args):
    """--cases of --device cuda: shapes ROWSxCOLS (numba_ln.cuda.bench's own cases by
    default), not this suite's case names."""
    names = split_names(p, "--cases", args.cases)
    bad = [n for n in names or () if not re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", n.lower())]
    if bad:
        p.error(f"--cases: unknown case(s) {', '.join(bad)} for --device cuda; give shapes as "
                "ROWSxCOLS, e.g. 4096x1024")
    return names


def backward_selection(p, args):
    """(cases, functions) of --backward."""
    from .backward_cases import BACKWARD_CASES, BACKWARD_FUNCTIONS

    by_name = {c.name: c for c in BACKWARD_CASES}
    names = known_names(p, "--cases", args.cases, by_name, "backward case(s)") or list(by_name)
    funcs = known_names(p, "--functions", args.functions, BACKWARD_FUNCTIONS,
                   "backward function(s)") or list(BACKWARD_FUNCTIONS)
    return [by_name[n] for n in names], tuple(funcs)


def selection(p, args):
    """(work: [(function, Case)], libraries) of the forward suite."""
    names = known_names(p, "--cases", args.cases, CASE_BY_NAME, "case(s)")
    funcs = known_names(p, "--functions", args.functions, FUNCTIONS, "function(s)") or list(FUNCTIONS)
    libs = known_names(p, "--libraries", args.libraries, CHOOSABLE, "librar(ies)")
    if libs:
        libs = tuple(lib for lib in LIBRARIES if lib in libs or lib in LINES)
    else:
        libs = LIBRARIES
    if args.quick and names is None:
        work = [(f, c) for f in funcs for c in cases_for(f, QUICK_CASES.get(f, ()))]
    else:
        work = [(f, c) for f in funcs for c in cases_for(f, names)]
    if not work:
        p.error("no (function, case) pair selected: see --help for which cases each function "
                "runs at")
    return work, libs
