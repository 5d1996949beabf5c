"""Leases on run folders (bench.runs.lease) and the driver's claims (bench.scheduling.claims): a run is
trained once whoever starts it. The file protocol on its own, then whole grids in threads of this
process (two drivers are two driver ids; the process-level tests, a SIGKILLed holder included, are in
tests/faults/test_two_drivers.py)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from bench import api
from bench.core import run_folder
from bench.core.errors import UserError
from bench.runs import lease, records
from bench.runs.config import RunConfig, resolve
from bench.scheduling import backends, claims
from tests.bench.scheduling import tiny


@pytest.fixture(scope="module", autouse=True)
def _test_registrations():
    with tiny.registered():
        yield


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(claims, "POLL_S", 0.1)
    with tiny.like_a_worker():
        yield


def _cfg(seed: int) -> RunConfig:
    return RunConfig(method="vqgan", dataset=tiny.DATASET, codebook_size=8, preset=tiny.PRESET, seed=seed)


def _run_dir(out, seed: int):
    return run_folder.run_dir(out, resolve(_cfg(seed)).run_id)


def _logged_steps(run_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / run_folder.TRAIN_LOG).read_text().splitlines()]


# --- the file protocol -------------------------------------------------------------------------


def test_one_claim_wins_and_the_lease_says_who_holds_it(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    assert lease.try_claim(run_dir, "aaaa") and not lease.try_claim(run_dir, "bbbb")
    held = lease.read(run_dir)
    assert held["driver"] == "aaaa" and isinstance(held["pid"], int) and held["host"]
    assert "driver aaaa (pid" in lease.describe(held) and " UTC" in lease.describe(held)
    assert lease.stale_reason(held) is None  # this very process: alive, and just refreshed
    lease.release(run_dir, "bbbb")  # not bbbb's: stays
    assert lease.read(run_dir)["driver"] == "aaaa"
    lease.release(run_dir, "aaaa")
    assert not run_dir.exists()  # the claim made the folder, nothing else is in it: gone with the lease


def test_refresh_moves_the_heartbeat_and_fails_once_the_lease_was_taken(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    lease.try_claim(run_dir, "aaaa")
    first = lease.read(run_dir)["heartbeat"]
    time.sleep(0.01)
    assert lease.refresh(run_dir, "aaaa") and lease.read(run_dir)["heartbeat"] > first
    monkeypatch.setattr(lease, "STALE_S", 0.0)
    old = lease.read(run_dir)
    time.sleep(0.01)
    why = lease.stale_reason(old)
    assert why is not None and "not refreshed for" in why
    assert lease.take_over(run_dir, old, "bbbb", why)
    assert not lease.refresh(run_dir, "aaaa")  # aaaa learns that it lost the lease
    taken = lease.taken_over(run_dir)
    assert taken["driver"] == "aaaa" and taken["why"] == why and lease.read(run_dir)["driver"] == "bbbb"


def test_only_one_of_two_drivers_takes_a_stale_lease_over(tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    lease.try_claim(run_dir, "dead")
    monkeypatch.setattr(lease, "STALE_S", 0.0)
    stale = lease.read(run_dir)
    time.sleep(0.01)
    assert lease.take_over(run_dir, stale, "first", "stale")
    assert not lease.take_over(run_dir, stale, "second", "stale")  # judged the same lease stale: too late
    assert lease.read(run_dir)["driver"] == "first"
    assert [p.name for p in run_dir.iterdir()] == [run_folder.LEASE]  # nothing set aside is left


def test_a_lease_of_a_process_gone_from_this_host_is_stale_at_once(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    run_dir = tmp_path / "r"
    lease.try_claim(run_dir, "dead")
    held = {**lease.read(run_dir), "pid": int(gone.stdout)}
    assert "is gone" in lease.stale_reason(held)
    assert lease.stale_reason({**held, "host": "another-node"}) is None  # elsewhere only the heartbeat tells


def test_starting_a_run_over_keeps_its_lease(tmp_path):
    run_dir = tmp_path / "r"
    lease.try_claim(run_dir, "aaaa")
    (run_dir / run_folder.CHECKPOINT).write_bytes(b"x")
    (run_dir / "sub").mkdir()
    lease.clear_run_folder(run_dir)
    assert [p.name for p in run_dir.iterdir()] == [run_folder.LEASE]


# --- grids ---------------------------------------------------------------------------------------


def test_two_drivers_on_one_folder_train_each_run_once_and_both_get_every_record(tmp_path):
    configs = [_cfg(s) for s in range(3)]
    results: dict[str, list] = {}
    seen: dict[str, list] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def driver(name: str) -> None:
        try:
            results[name] = api.run_grid(configs, tmp_path, progress=False, backend="local",
                                         on_record=seen[name].append)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=driver, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and set(results) == {"a", "b"}
    for name in ("a", "b"):
        assert [r["status"] for r in results[name]] == ["finished"] * 3
        assert [r["run_id"] for r in results[name]] == [resolve(c).run_id for c in configs]
    trained_here = [r["run_id"] for name in ("a", "b") for r in seen[name] if not r.get("claimed_by")]
    assert sorted(trained_here) == sorted(resolve(c).run_id for c in configs)  # each by exactly one driver
    for seed in range(3):
        steps = _logged_steps(_run_dir(tmp_path, seed))
        assert steps == sorted(set(steps)) and steps[-1] == tiny.STEPS  # every logged step once
        assert not (_run_dir(tmp_path, seed) / run_folder.LEASE).exists()


def test_a_claimed_run_is_not_trained_and_no_wait_leaves_it(tmp_path, capsys):
    held = _run_dir(tmp_path, 1)
    assert lease.try_claim(held, "otherdriver")  # a live holder: this process, another driver id
    recs = api.run_grid([_cfg(0), _cfg(1)], tmp_path, progress=False, backend="local", wait=False)
    err = capsys.readouterr().err
    assert [r["config"]["seed"] for r in recs] == [0] and recs[0]["status"] == "finished"
    assert "claimed by driver otherdriver (pid" in err and "not trained here" in err
    assert "--no-wait: left 1 run(s)" in err
    assert lease.read(held)["driver"] == "otherdriver" and [p.name for p in held.iterdir()] == [run_folder.LEASE]
    assert not (_run_dir(tmp_path, 0) / run_folder.LEASE).exists()


def test_a_waiting_driver_takes_the_record_of_the_holder_when_it_ends(tmp_path, capsys):
    from bench.runs.runner import run_one

    held = _run_dir(tmp_path, 0)
    assert lease.try_claim(held, "otherdriver")

    def holder() -> None:  # trains the run, then releases, as a driver does
        time.sleep(0.5)
        run_one(_cfg(0), tmp_path, progress=False)
        lease.release(held, "otherdriver")

    t = threading.Thread(target=holder)
    t.start()
    seen: list = []
    recs = api.run_grid([_cfg(0)], tmp_path, progress=False, backend="local", on_record=seen.append)
    t.join()
    assert recs[0]["status"] == "finished" and recs[0]["claimed_by"].startswith("driver otherdriver")
    assert seen == recs and "waiting for 1 run(s) that other drivers are training" in capsys.readouterr().err
    assert _logged_steps(held) == list(range(1, tiny.STEPS + 1))


def test_a_stale_lease_is_taken_over_while_waiting_and_the_record_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lease, "STALE_S", 1.0)
    held = _run_dir(tmp_path, 0)
    assert lease.try_claim(held, "silent")  # never refreshed: stale after a second
    recs = api.run_grid([_cfg(0)], tmp_path, progress=False, backend="local")
    rec = recs[0]
    assert rec["status"] == "finished" and not rec.get("claimed_by")
    assert rec["lease_taken_over"]["driver"] == "silent" and "not refreshed for" in rec["lease_taken_over"]["why"]
    assert records.read_record(held)["lease_taken_over"]["driver"] == "silent"  # on disk too
    assert "took over the lease of driver silent" in capsys.readouterr().err
    assert not (held / run_folder.LEASE).exists()


def test_the_heartbeat_keeps_a_long_run_from_going_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "STALE_S", 0.5)  # refreshed every 0.05 s
    run_dir = _run_dir(tmp_path, 0)
    beats: list[float] = []

    def slow(step: int) -> None:  # a checkpoint hook that makes the run outlive STALE_S several times
        beats.append(lease.read(run_dir)["heartbeat"])
        assert lease.stale_reason(lease.read(run_dir)) is None
        time.sleep(0.6)

    rec = api.run_grid([_cfg(0)], tmp_path, progress=False, backend="local", on_checkpoint=slow)[0]
    assert rec["status"] == "finished" and rec["lease_taken_over"] is None
    assert len(beats) == 2 and beats[1] - beats[0] > 0.3


def test_ctrl_c_releases_the_lease_and_keeps_the_checkpoint(tmp_path):
    def interrupt(step: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.run_grid([_cfg(0)], tmp_path, progress=False, backend="local", on_checkpoint=interrupt)
    run_dir = _run_dir(tmp_path, 0)
    assert (run_dir / run_folder.CHECKPOINT).exists() and not (run_dir / run_folder.LEASE).exists()


class _Refusing:
    summary = "refuses to start, as a backend whose checks fail does"

    def run(self, cells, out, force, progress, report) -> None:
        raise UserError("no node can run these")


def test_a_backend_that_refuses_to_start_leaves_no_run_folder(tmp_path):
    backends.registry.add("test-refusing", _Refusing)
    try:
        with pytest.raises(UserError):
            api.run_grid([_cfg(0)], tmp_path / "out", progress=False, backend="test-refusing")
    finally:
        backends.registry.remove("test-refusing")
    assert not (tmp_path / "out").exists()


def test_the_cli_no_wait_flag_leaves_a_claimed_run_and_says_so(tmp_path, capsys):
    from bench.cli.main import main

    held = _run_dir(tmp_path, 1)
    assert lease.try_claim(held, "otherdriver")
    code = main(["--methods", "vqgan", "--datasets", tiny.DATASET, "--codebook-sizes", "8", "--seeds", "0,1",
                 "--preset", tiny.PRESET, "--no-ray", "--no-progress", "--no-wait", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and f"finished vqgan on {tiny.DATASET} K=8 seed=0 in " in out
    assert f"vqgan on {tiny.DATASET} K=8 seed=1 ({held.name}): claimed by driver otherdriver" in err
    assert "--no-wait: left 1 run(s) that other drivers are training" in err
    assert lease.read(held)["driver"] == "otherdriver" and records.read_record(held) is None
