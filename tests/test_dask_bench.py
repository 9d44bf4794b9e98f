"""``python -m numba_ln.bench --dask`` in-process on the reduced shapes (one round): the
table and the ``--json`` file (no timing asserted)."""
import json

import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from numba_ln.bench import arguments, cli, dask_cases  # noqa: E402


def test_dask_option_prints_and_saves_every_case(tmp_path, capsys):
    path = tmp_path / "dask.json"
    assert cli.main(["--dask", "--small", "--rounds", "1", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert [r["case"] for r in saved["dask"]] == [c.name for c in dask_cases.DASK_CASES]
    for r in saved["dask"]:
        assert set(r["libraries"]) == set(dask_cases.DASK_CONTENDERS)
        assert r["libraries"]["dask"]["speedup_vs_dask"] == pytest.approx(1.0)
        for name, entry in r["libraries"].items():
            assert entry["check_error"] < 1e-4 and len(entry["times_s"]) == 1
            assert f"{r['case']:<18}" in printed and name in printed
    assert "--dask" in arguments.parser().format_help()
