import pytest


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh vqbench cache folder (priors are memoised per cache folder, so nothing leaks in)."""
    monkeypatch.setenv("VQBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
