"""The folder worker processes share their metrics in: made or emptied before they start, and an
ended worker's levels removed."""

import os
from pathlib import Path

from authgres import metrics_dir


def test_a_new_folder_when_none_is_named(monkeypatch):
    monkeypatch.delenv(metrics_dir.VARIABLE, raising=False)
    cleanup = metrics_dir.prepare()
    folder = Path(os.environ[metrics_dir.VARIABLE])
    assert folder.is_dir() and not any(folder.iterdir())
    cleanup()
    assert not folder.exists()


def test_the_named_folder_is_emptied_of_an_earlier_runs_files(monkeypatch, tmp_path):
    monkeypatch.setenv(metrics_dir.VARIABLE, str(tmp_path))
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"old")
    (tmp_path / "README").write_text("not ours")
    cleanup = metrics_dir.prepare()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["README"]
    cleanup()
    assert tmp_path.is_dir()


def test_an_ended_workers_levels_go_and_its_counts_stay(monkeypatch, tmp_path):
    monkeypatch.setenv(metrics_dir.VARIABLE, str(tmp_path))
    for name in ("counter_7.db", "histogram_7.db", "gauge_livesum_7.db", "gauge_livesum_8.db"):
        (tmp_path / name).write_bytes(b"")
    metrics_dir.worker_ended(7)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_7.db", "gauge_livesum_8.db", "histogram_7.db"]
