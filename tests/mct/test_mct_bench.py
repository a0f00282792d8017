"""bench/mct_digits_table.py: its statistics, search candidates, splits, and a tiny run."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import mct_digits_table as bench  # noqa: E402

from pycaffe_mct.solvers.log import default_writer, set_default_writer  # noqa: E402


def test_mean_std_is_the_sample_std():
    assert bench.mean_std([1.0, 2.0, 3.0, 6.0]) == (3.0, pytest.approx(math.sqrt(14 / 3)))


def test_paired_difference_is_a_t_interval_over_seeds():
    first, second = [0.90, 0.92, 0.95, 0.91, 0.93], [0.89, 0.90, 0.92, 0.90, 0.90]
    diff = bench.paired_difference(first, second)
    diffs = np.subtract(first, second)
    half = 2.7764451 * diffs.std(ddof=1) / math.sqrt(5)         # t(0.975, 4 dof)
    assert diff["mean"] == pytest.approx(0.02)
    assert (diff["low"], diff["high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert diff["significant"] and diff["per_seed"] == pytest.approx(diffs.tolist())
    assert not bench.paired_difference([0.9, 0.8, 0.9], [0.8, 0.9, 0.85])["significant"]


def test_every_method_gets_the_same_budget_of_distinct_candidates_defaults_first():
    for method, space in bench.SEARCH_SPACES.items():
        found = bench.candidates(method, 4)
        assert len(found) == 4 and found == bench.candidates(method, 4)
        assert len({json.dumps(c, sort_keys=True) for c in found}) == 4
        assert found[0] == {name: values[0] for name, values in space.items()}


def test_split_is_fixed_per_seed_and_validation_comes_from_the_clean_budget():
    transition = bench.level_transition("pairflip:0.45")[2]
    split = bench.make_split("digits", transition, seed=3)
    again = bench.make_split("digits", transition, seed=3)
    sizes = {name: len(split[name][1]) for name in ("test", "val", "clean", "noisy")}
    assert sizes == {"test": 359, "val": 48, "clean": 96, "noisy": 1294}
    assert all(np.array_equal(split[n][1], again[n][1]) for n in sizes)
    assert 0.40 < split["rate"] < 0.50
    np.testing.assert_array_equal(split["true"][0], split["noisy"][0])


@pytest.fixture
def restore_log_writer():
    """The bench silences the library's global log writer; later tests need it back."""
    previous = set_default_writer(default_writer())
    yield
    set_default_writer(previous)


def test_tiny_table_runs_end_to_end_and_writes_every_seed(tmp_path, monkeypatch, capsys,
                                                          restore_log_writer):
    monkeypatch.setattr(bench, "ITERATIONS", 12)
    out = tmp_path / "table.json"
    assert bench.main(["--level", "symmetric:0.4", "--seeds", "2", "--budget", "2",
                       "--methods", "clean,coteach,mct", "--sensitivity", "symmetric:0.4",
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MCT minus each method" in printed and "Sensitivity (symmetric:0.4)" in printed
    table = json.loads(out.read_text())
    assert [r["seed"] for r in table["records"]] == [1, 2]
    record = table["records"][0]
    assert len(record["methods"]["mct"]["search"]) == 2
    assert 0 <= record["mct_rate_estimate"] < 1 and 0.3 < record["true_rate"] < 0.5
    assert set(record["sensitivity"]) == {"-0.2", "-0.1", "+0.0", "+0.1", "+0.2"}
    level = table["levels"]["symmetric:0.4"]
    assert level["accuracy"]["mct"] == [r["methods"]["mct"]["test_accuracy"]
                                        for r in table["records"]]
