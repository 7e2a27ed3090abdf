"""sweet_lightning/host.py: the process settings a run applies before training."""

import sys

import pytest

from sweet_lightning import host


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_accepts_both_settings():
    # mallopt returns 0 for a value glibc refuses (e.g. an mmap threshold above its 32 MiB ceiling)
    assert host.keep_freed_memory() is True


def test_train_applies_the_run_settings(monkeypatch, tmp_path):
    """train.py hands torch_threads and keep_freed_memory to host.configure before training."""
    from tests.conftest import compose

    seen = []

    class Stop(Exception):
        pass

    def configure(threads, keep_memory):
        seen.append((threads, keep_memory))
        raise Stop

    monkeypatch.setattr(host, "configure", configure)
    from sweet_lightning.train import _train

    for over in (["torch_threads=1"], ["keep_freed_memory=false"]):
        with pytest.raises(Stop):
            _train(compose(["model=tiny_bert", f"run_dir={tmp_path}", *over]))
    assert seen == [(1, True), (None, False)]
