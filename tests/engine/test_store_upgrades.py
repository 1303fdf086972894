"""Results that outlive upgrades: fixture stores of every shipped schema (committed bytes, written by
tests/fixtures/stores/make_stores.py) are read by this release; a column a part lacks reads as null of its
declared type; a part of a newer release is read when its identity columns are there, refused naming the
release otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from suite.analysis.ranking import leaderboard
from suite.store.record import TRIALS_SCHEMA
from suite.store.results import IDENTITY_COLUMNS, ResultsStore, StoreError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"


def _copy(tmp_path: Path, *names: str) -> ResultsStore:
    root = tmp_path / "store"
    for name in names:
        shutil.copytree(FIXTURES / name, root, dirs_exist_ok=True)
    return ResultsStore(root)


@pytest.mark.parametrize("name", ["v2", "v2-before-checkpoint", "v2-added-column", "v3-newer"])
def test_every_fixture_store_reads(tmp_path, name):
    store = _copy(tmp_path, name)
    trials = store.trials().sort_values("trial_key")
    assert len(trials) == 3 and trials["test.rmse"].tolist() == pytest.approx([0.6, 1.6, 2.6])
    assert len(store.curves()) == 6
    assert set(TRIALS_SCHEMA.names) <= set(trials.columns)  # every column of today's record is there
    board = leaderboard(store)
    assert len(board) == 1 and board["n_ok"].iloc[0] >= 1


def test_missing_columns_read_as_null_of_their_type(tmp_path):
    store = _copy(tmp_path, "v2-before-checkpoint")
    raw = pq.read_table(next((store_root := Path(store.root)).rglob("trials/*/*.parquet")))
    assert "checkpoint_step" not in raw.column_names  # the fixture really lacks them
    table = store.arrow("trials")
    assert table.schema.field("checkpoint_step").type == TRIALS_SCHEMA.field("checkpoint_step").type
    assert table["checkpoint_step"].null_count == 3 and table["checkpoint"].null_count == 3
    assert store_root.exists()


def test_added_and_newer_columns_are_kept(tmp_path):
    assert _copy(tmp_path / "a", "v2-added-column").trials()["future_cost_j"].tolist() == [1.5] * 3
    assert _copy(tmp_path / "b", "v3-newer").trials()["carbon_g"].tolist() == [0.1] * 3


def test_schemas_mix_in_one_store_and_compact(tmp_path):
    store = _copy(tmp_path, "v1", "v2", "v2-before-checkpoint", "v2-added-column")
    assert store.experiments() == ["old", "v2", "v2_added_column", "v2_before_checkpoint"]
    before = store.trials()
    assert len(before) == 10
    store.compact()
    after = store.trials()
    pd.testing.assert_series_equal(before.sort_values("trial_key")["test.rmse"].reset_index(drop=True),
                                   after.sort_values("trial_key")["test.rmse"].reset_index(drop=True))
    assert not store.has_legacy()


def test_newer_part_without_an_identity_column_is_refused_naming_its_release(tmp_path):
    store = _copy(tmp_path, "v3-newer")
    part = next(Path(store.root).rglob("trials/*/*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["config_id"]).replace_schema_metadata(table.schema.metadata), part)
    with pytest.raises(StoreError, match=r"config_id.*rnnbench 9\.0\.0.*schema version 3"):
        store.trials()


def test_a_current_part_without_an_identity_column_is_refused(tmp_path):
    store = _copy(tmp_path, "v2")
    part = next(Path(store.root).rglob("trials/*/*.parquet"))
    table = pq.read_table(part)
    assert set(IDENTITY_COLUMNS["trials"]) <= set(table.column_names)
    pq.write_table(table.drop_columns(["trial_key"]).replace_schema_metadata(table.schema.metadata), part)
    with pytest.raises(StoreError, match="identity column 'trial_key'"):
        store.trials()


def test_curves_left_by_a_failed_flush_are_not_duplicated(tmp_path):
    """A flush that wrote its curves part and then failed (a full disk) writes the same points again with
    the trial row: readers show each point once, and compaction keeps one."""
    from suite.store.record import CurvePoint, TrialRecord

    store = ResultsStore(tmp_path)
    r = TrialRecord(experiment="e", trial_key="k", config_id="c", task="t", model="gru", method="bptt", seed=0,
                    status="ok", run_id="run1", metrics={"test": {"rmse": 1.0}})
    points = [CurvePoint("e", "k", "run1", s, s, 0, 0.1 * s, 0.1 * s, "val", "rmse", 1.0 / s) for s in (1, 2, 3)]
    store.write([], points)  # the failed flush: curves written, no trial row
    store.write([r], points)  # the retry
    curves = store.curves("e")
    assert len(curves) == 3 and not curves.duplicated(["trial_key", "step", "split", "metric"]).any()
    reports = {x.table: x for x in store.compact()}
    assert (reports["curves"].rows_before, reports["curves"].rows_after) == (6, 3)
    assert len(store.curves("e")) == 3
