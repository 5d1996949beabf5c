"""One process holding one folder's lease (bench.runs.held_lease), as a prior does for its folder."""
import threading

from bench.runs import held_lease, lease


def test_the_lease_is_held_refreshed_and_released(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "STALE_S", 0.5)  # refreshed every 0.05 s
    folder = tmp_path / "prior"
    with held_lease.hold(folder, "prior p") as took_over:
        first = lease.read(folder)
        threading.Event().wait(0.3)
        later = lease.read(folder)
        assert took_over is None and later["driver"] == first["driver"] and later["heartbeat"] > first["heartbeat"]
        assert not lease.try_claim(folder, "another")
    assert lease.read(folder) is None and not folder.exists()  # an empty folder goes with the lease


def test_the_lease_is_released_when_the_work_fails(tmp_path):
    folder = tmp_path / "prior"
    folder.mkdir()
    (folder / "checkpoint.pt").write_text("x")
    try:
        with held_lease.hold(folder, "prior p"):
            raise ValueError("the prior failed")
    except ValueError:
        pass
    assert lease.read(folder) is None and (folder / "checkpoint.pt").exists()


def test_a_waiter_gets_the_lease_once_the_holder_releases_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(held_lease, "POLL_S", 0.02)
    folder = tmp_path / "prior"
    assert lease.try_claim(folder, "first")
    order = []

    def second():
        with held_lease.hold(folder, "prior p"):
            order.append(lease.read(folder)["driver"])

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not order
    lease.release(folder, "first")
    thread.join(10)
    assert order and order[0] != "first"
    assert "prior p: held by driver first" in capsys.readouterr().err
