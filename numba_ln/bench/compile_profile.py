"""Where a test run's compiling goes: a pytest plugin that records every Numba
compilation (its ``numba:compile`` events) with the test that caused it, and a report.

    NUMBA_CACHE_DIR=$(mktemp -d) pytest -p numba_ln.bench.compile_profile
    python -m numba_ln.bench.compile_profile             # the report

Each test process appends to ``compile-profile/<pid>.jsonl`` (git ignores the folder; delete
it before a new run); a line holds the test, the kernel, the argument types it was
compiled for, its seconds and its nesting depth.  A compilation's own time leaves out the
compilations nested in it (a kernel compiling the helpers it calls), so the own times add
up to the total.  Into an empty cache the figures are compiling; into a warm one, mostly
cache loads.  The wall times of processes that compile side by side share the cores:
compare runs with the same number of workers.  (README, First use and caching, quotes a
run.)

A variant is recorded under the test that needed it first, so one run does not say what
a test costs the suite; a second run with ``--reverse-order`` (the first run's folder
moved aside, a fresh cache) does: what the same test compiled first both ways is what,
likely, no other test needs.

    python -m numba_ln.bench.compile_profile FIRST --sole SECOND
"""
import collections
import glob
import json
import os
import sys
import time

FOLDER = "compile-profile"


class _Recorder:
    """A Numba event listener writing one line per compilation."""

    def __init__(self, folder):
        self.folder, self.test, self.starts, self.out = folder, None, [], None

    def on_start(self, event):
        self.starts.append(time.perf_counter())

    def on_end(self, event):
        began = self.starts.pop()
        try:  # (a recorder never fails a compilation)
            dispatcher = (event.data or {}).get("dispatcher")
            function = getattr(dispatcher, "py_func", None)
            name = f"{getattr(function, '__module__', None) or ''}." \
                   f"{getattr(function, '__qualname__', None) or dispatcher}"
            if self.out is None:
                os.makedirs(self.folder, exist_ok=True)
                self.out = open(os.path.join(self.folder, f"{os.getpid()}.jsonl"), "a")
            args = (event.data or {}).get("args")
            self.out.write(json.dumps({"test": self.test, "kernel": name,
                                       "seconds": time.perf_counter() - began,
                                       "depth": len(self.starts),
                                       "types": None if args is None else str(args)}) + "\n")
            self.out.flush()
        except Exception:  # noqa: BLE001
            pass


_RECORDER = _Recorder(FOLDER)


def pytest_configure(config):
    """Start recording (as a plugin only: importing this module records nothing)."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, ev):
            _RECORDER.on_start(ev)

        def on_end(self, ev):
            _RECORDER.on_end(ev)

    event.register("numba:compile", Listener())


def pytest_addoption(parser):
    parser.addoption("--reverse-order", action="store_true",
                     help="run the tests in reverse order (compile_profile: with a run in "
                          "the usual order, --sole says which compilations only one test "
                          "needs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse-order"):
        items.reverse()


def pytest_runtest_setup(item):
    _RECORDER.test = item.nodeid


def own_times(records):
    """Each record with "own": its seconds less those of the compilations nested in it
    (records of one process, in the order they ended)."""
    nested = collections.defaultdict(float)  # depth -> seconds of ended children
    for r in records:
        r["own"] = r["seconds"] - nested.pop(r["depth"] + 1, 0.0)
        nested[r["depth"]] += r["seconds"]
    return records


def _records(folder):
    records = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        with open(path) as f:
            records += own_times([json.loads(line) for line in f])
    return records


def variants(folder=FOLDER, kernel=""):
    """The lines listing each compilation of the kernels whose names contain `kernel`:
    own seconds, the test, the argument types (which argument forms cost variants)."""
    return [f"{r['own']:6.2f}  {r['test'] or '(outside tests)'}\n        {r.get('types')}"
            for r in sorted(_records(folder), key=lambda r: (r["kernel"], str(r.get("types"))))
            if kernel in r["kernel"]]


def sole(folder, other, top=25):
    """The report's lines of the compilations that the same test made first in both runs
    (the usual order and --reverse-order): what that test alone, likely, needs, by test,
    in own seconds (the mean of the two runs)."""
    first = {}
    for r in _records(folder):
        first.setdefault((r["kernel"], r.get("types")), r)
    totals, counts = collections.defaultdict(float), collections.Counter()
    for r in _records(other):
        mine = first.pop((r["kernel"], r.get("types")), None)
        if mine is not None and r["test"] and mine["test"] == r["test"]:
            totals[r["test"]] += (mine["own"] + r["own"]) / 2
            counts[r["test"]] += 1
    lines = [f"{sum(counts.values())} compilations, {sum(totals.values()):.1f} s made first "
             f"by the same test in both runs"]
    lines.append("--- by test: seconds, compilations")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{seconds:8.1f} {counts[name]:5d}  {name}")
    return lines


def report(folder=FOLDER, top=25):
    """The report's lines: total, by kernel, by test file, by test."""
    records = _records(folder)
    lines = [f"{len(records)} compilations, {sum(r['own'] for r in records):.1f} s "
             f"(own times, all processes)"]

    def table(title, key):
        totals, counts = collections.defaultdict(float), collections.Counter()
        for r in records:
            totals[key(r)] += r["own"]
            counts[key(r)] += 1
        lines.append(f"--- {title}: seconds, compilations")
        for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{seconds:8.1f} {counts[name]:5d}  {name}")

    table("by kernel", lambda r: r["kernel"])
    table("by test file", lambda r: (r["test"] or "(outside tests)").split("::")[0])
    table("by test", lambda r: r["test"] or "(outside tests)")
    return lines


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m numba_ln.bench.compile_profile",
        description="Report where a test run's compiling went (run the tests with "
                    "-p numba_ln.bench.compile_profile first).")
    p.add_argument("folder", nargs="?", default=FOLDER,
                   help=f"the folder of the run's records (default: {FOLDER})")
    p.add_argument("--top", type=int, default=25, help="rows per table (default: 25)")
    p.add_argument("--variants", metavar="KERNEL",
                   help="list instead each compilation of the kernels whose names contain "
                        "KERNEL, with its test and argument types")
    p.add_argument("--sole", metavar="OTHER",
                   help="list instead, by test, the compilations made first by the same "
                        "test here and in the records folder OTHER, a run with "
                        "--reverse-order")
    args = p.parse_args(argv)
    for folder in (args.folder, args.sole):
        if folder is not None and not glob.glob(os.path.join(folder, "*.jsonl")):
            p.error(f"no records in {folder}: run the tests with "
                    "-p numba_ln.bench.compile_profile first")
    if args.top < 1:
        p.error("--top must be at least 1")
    if args.sole is not None:
        print("\n".join(sole(args.folder, args.sole, args.top)))
    elif args.variants is not None:
        print("\n".join(variants(args.folder, args.variants)))
    else:
        print("\n".join(report(args.folder, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
