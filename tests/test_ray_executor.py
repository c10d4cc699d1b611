"""compare --executor ray on a local Ray cluster (CPU, loopback only): every cell once, through Ray Client
too, a killed Ray worker loses and duplicates nothing, Ray missing is one line; and the driver loop (dedup,
resubmission, shipping) without Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mambapoc.bench import ray_executor as rx
from mambapoc.bench import shipment as ship
from mambapoc.bench.config import CompareConfig
from mambapoc.bench.plan import Planned
from mambapoc.bench.task_driver import Driver
from mambapoc.cli import main
from mambapoc.errors import UserError
from mambapoc.results import RESULTS, Cell, read_cells
from mambapoc.tasks.spec import TaskSpec

FAST = ["--repeats", "1", "--min-time", "0", "--warmup", "0", "--instances", "1", "--new-tokens", "2",
        "--price-per-hour", "1.0"]


def _compare(tiny_models, tiny_dataset, out, *extra):
    data_dir, name = tiny_dataset
    main(["compare", "--dataset", name, "--data-dir", str(data_dir), "--models",
          f"{tiny_models['mamba']},{tiny_models['llama']}", "--lengths", "64,128,256",
          "--tasks", "continuation", "--out", str(out), *FAST, "--executor", "ray", *extra])
    return read_cells(out).cells


def _lines(out) -> list[str]:
    """Every cell id written to results.jsonl, a cell written twice twice (read_cells keeps the last)."""
    text = (out / RESULTS).read_text()
    return [Cell.from_json(json.loads(line)).cell_id for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster this test process starts (and so its workers are our descendants), 2 CPUs. The tests
    that use it come after the one that starts its own (--ray-address local)."""
    ray = pytest.importorskip("ray")
    # "local": a new cluster even where one already runs on this machine (ray.init() would join that one).
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.timeout(300)
def test_a_sweep_on_a_local_cluster_runs_every_cell_once(tiny_models, tiny_dataset, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "run"
    cells = _compare(tiny_models, tiny_dataset, out, "--ray-address", "local")
    assert not ray.is_initialized()  # the cluster compare started is gone with it
    ids = _lines(out)
    assert len(ids) == len(set(ids)) == 2 * 3
    assert all(c.ok for c in cells), [c.error for c in cells if not c.ok]
    assert {c.device for c in cells} == {f"ray:{os.uname().nodename}/cpu"}  # the node that measured them
    assert all(c.device_name.startswith("cpu: ") and c.torch_threads == 1 for c in cells)
    assert {c.family for c in cells} == {"mamba", "transformer"}
    models = json.loads((out / "models.json").read_text())
    assert {m["spec"] for m in models} == {str(tiny_models["mamba"]), str(tiny_models["llama"])}
    # Resuming (on Ray again) runs nothing again.
    again = _compare(tiny_models, tiny_dataset, out, "--resume", "--ray-address", "local")
    assert sorted(c.cell_id for c in again) == sorted(ids) and _lines(out) == ids


@pytest.fixture
def head_node():
    """A cluster started as an operator starts one (`ray start --head --block`), in its own temporary
    directory; yields its Ray Client address. Every process of it is stopped at the end."""
    pytest.importorskip("ray")
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]")
    import psutil

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("no ray command beside this Python")
    temp = tempfile.mkdtemp(prefix="rayc-", dir="/tmp")  # short: Ray's socket paths live under it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # an ephemeral port, clear of Ray's worker ports (10002-19999)
    log_path = Path(temp) / "head.log"
    with open(log_path, "wb") as log_file:
        head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--port", "0", "--ray-client-server-port",
                                 str(port), "--num-cpus", "2", "--include-dashboard", "false",
                                 "--disable-usage-stats", "--temp-dir", temp],
                                stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        deadline = time.time() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    pytest.fail(f"ray start --head did not come up: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"ray://127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        for p in psutil.process_iter(["cmdline"]):
            try:
                if temp in " ".join(p.info["cmdline"] or []):
                    p.kill()
            except psutil.Error:
                continue
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_sweep_through_ray_client_runs_every_cell_once(head_node, tiny_models, tiny_dataset, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "run"
    cells = _compare(tiny_models, tiny_dataset, out, "--ray-address", head_node)
    assert not ray.is_initialized()  # disconnected at the end
    ids = _lines(out)
    assert len(ids) == len(set(ids)) == 2 * 3
    assert all(c.ok for c in cells), [c.error for c in cells if not c.ok]
    assert {c.device for c in cells} == {f"ray:{os.uname().nodename}/cpu"}


def _ray_tasks() -> list:
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.cmdline() and p.cmdline()[0].startswith(f"ray::{rx.TASK_NAME}"):
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(300)
def test_a_killed_ray_worker_loses_and_duplicates_nothing(cluster, tiny_models, tiny_dataset, tmp_path, caplog):
    out = tmp_path / "run"
    killed: list[int] = []
    at_kill: list[int] = []

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline:
            if (out / RESULTS).is_file() and _lines(out):
                tasks = _ray_tasks()
                if tasks:
                    at_kill.append(len(_lines(out)))
                    for p in tasks:  # every running task: one of them at least is mid-run
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                    return
            time.sleep(0.05)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    # A second of timing per cell keeps the tasks busy while the kill lands.
    cells = _compare(tiny_models, tiny_dataset, out, "--min-time", "1", "--ray-address", "auto")
    th.join(timeout=5)
    assert killed and at_kill[0] < 6, "the kill should land mid-sweep"
    assert cluster.is_initialized()  # a connection compare did not make is left as it was
    ids = _lines(out)
    assert len(ids) == len(set(ids)) == 6, ids  # none lost, none written twice
    assert all(c.ok for c in cells), [c.error for c in cells if not c.ok]
    assert "submitted again" in caplog.text


@pytest.mark.timeout(300)
def test_a_model_a_node_lacks_travels_through_the_object_store(cluster, tiny_models, tiny_dataset, tmp_path):
    from dataclasses import replace

    from mambapoc.bench.runner import Limits

    data_dir, name = tiny_dataset
    src = tiny_models["mamba"]
    cfg = CompareConfig.from_dict({"executor": "ray", "repeats": 1, "min_time_s": 0, "warmup": 0, "instances": 1,
                                   "new_tokens": 2, "lengths": [64], "tasks": "continuation"})
    limits = Limits(120, 60, None)

    class Elsewhere(rx.RayBackend):
        """The model at a path no node has (as on a cluster without a shared filesystem)."""

        asked: list = []

        def _model(self, spec):
            return self.models.setdefault(spec, ship.Shipment(str(tmp_path / "gone" / src.name), ship.shipment(src).files))

        def ship(self, model, missing, facts):
            self.asked.append(missing)
            self.models[model] = replace(self.models[model], blob=self.ray.put(ship.pack(src)))
            return None

    backend = Elsewhere(cluster, cfg, "cpu", "float32", str(data_dir / name), limits)
    got = []
    cells = [Planned(str(src), "ours", False, TaskSpec("continuation"), 64)]
    Driver(backend, lambda p, info, m, facts: got.append((info, m))).run(cells)
    assert backend.asked == [["model"]]
    (info, measured), = got
    assert measured["status"] == "ok", measured
    assert info["name"] == src.name and info["spec"] != str(src)  # ran from the copy, under its own name
    # Over the limit, nothing travels and the cells say what to do.
    small = rx.RayBackend(cluster, cfg, "cpu", "float32", str(data_dir / name), limits, ship_limit=1)
    assert small.dataset.blob is None
    for what in ("model", "dataset"):
        why = small.ship(str(src), [what], {"host": "n1"})
        assert "not on node n1" in why and "shared filesystem" in why


def test_without_ray_the_executor_says_how_to_install_it(tiny_models, tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        _compare(tiny_models, tiny_dataset, out)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mambapoc[ray]'" in err[0]
    assert not out.exists()


def test_ray_settings_are_checked():
    ok = CompareConfig.from_dict({"executor": "ray", "ray_address": "10.0.0.1:6379", "ray_cpus_per_task": 2})
    assert ok.ray_cpus_per_task == 2 and ok.ray_gpus_per_task == 1.0
    assert CompareConfig.from_dict({"executor": "ray", "ray_address": "ray://head:10001"}).ray_address.startswith("ray:")
    for raw, match in [({"executor": "ray", "devices": "cpu:0,cpu:1"}, "drop one"),
                       ({"executor": "ray", "interleave": True}, "drop one"),
                       ({"executor": "ray", "ray_address": "ray://head"}, "ray://HOST:PORT"),
                       ({"executor": "ray", "ray_address": "head"}, "HOST:PORT"),
                       ({"executor": "slurm"}, "local, ray"),
                       ({"ray_gpus_per_task": 2}, "one GPU"),
                       ({"ray_cpus_per_task": 0}, "at least 1")]:
        with pytest.raises(UserError, match=match):
            CompareConfig.from_dict(raw)


# ---- the driver loop, without Ray ----------------------------------------------------------------------

def _cells(*models: str, n: int = 3) -> list[Planned]:
    return [Planned(m, "hf", False, TaskSpec("continuation"), 64 * (i + 1)) for m in models for i in range(n)]


class Fake:
    """Tasks as Python generators: `script(model, attempt, cells)` yields a task's messages or raises."""

    def __init__(self, script):
        self.script, self.submitted, self.cancelled, self.shipped = script, [], [], []
        self.ship_answer = None

    def submit(self, model, impl, cells):
        attempt = sum(1 for m, _ in self.submitted if m == model)
        self.submitted.append((model, [c.cell_id for c in cells]))
        return iter(self.script(model, attempt, cells))

    def wait(self, handles, timeout):
        return list(handles)

    def take(self, handle):
        return next(handle)

    def cancel(self, handle):
        self.cancelled.append(handle)

    def ship(self, model, missing, facts):
        self.shipped.append((model, missing))
        return self.ship_answer


def _cell(c: Planned) -> tuple:
    return ("cell", c.cell_id, {"family": "mamba"}, {"status": "ok"})


def _drive(script, cells, **kw):
    fake, got = Fake(script), []
    driver = Driver(fake, lambda p, info, m, facts: got.append((p.cell_id, m["status"], m.get("error"))), **kw)
    return fake, driver, got


def test_a_lost_task_is_resubmitted_with_the_cells_not_received_and_nothing_is_recorded_twice():
    def script(model, attempt, cells):
        yield ("hello", {"label": "n1"})
        if model == "a" and attempt == 0:
            yield _cell(cells[0])
            raise RuntimeError("node died")
        if model == "a":
            yield _cell(_cells("a")[0])  # a cell already recorded, sent again: ignored
        for c in cells:
            yield ("start", c.cell_id)
            yield _cell(c)

    cells = _cells("a", "b")
    fake, driver, got = _drive(script, cells)
    driver.run(cells)
    assert sorted(cid for cid, _, _ in got) == sorted(c.cell_id for c in cells)
    assert all(status == "ok" for _, status, _ in got)
    # The second task of `a` was given only the two cells the first did not deliver.
    assert [ids for m, ids in fake.submitted if m == "a"] == [[c.cell_id for c in cells[:3]],
                                                             [c.cell_id for c in cells[1:3]]]
    assert driver.losses == [(("a", "hf"), "RuntimeError: node died")]


def test_a_run_lost_too_often_ends_as_error_cells():
    def script(model, attempt, cells):
        if attempt == 1:
            yield _cell(cells[0])
            return  # the stream ended without the other cells: lost too
        raise ConnectionError("worker killed")
        yield  # a generator

    cells = _cells("a")
    fake, driver, got = _drive(script, cells, max_resubmits=3)
    driver.run(cells)
    assert len(fake.submitted) == 4  # the first task and 3 resubmissions
    assert [s for _, s, _ in got] == ["ok", "error", "error"]
    assert "lost 4 times" in got[1][2] and "ConnectionError: worker killed" in got[1][2]


def test_a_directory_missing_on_a_node_is_shipped_or_the_cells_say_why():
    def script(model, attempt, cells):
        yield ("hello", {"label": "n1"})
        if attempt == 0 or model == "b":
            yield ("missing", ["model"], {"host": "n1"})
            return
        yield from (_cell(c) for c in cells)

    cells = _cells("a")
    fake, driver, got = _drive(script, cells)
    driver.run(cells)  # shipped: the same cells again, not counted as a loss
    assert [s for _, s, _ in got] == ["ok"] * 3 and not driver.losses and fake.shipped == [("a", ["model"])]
    fake, driver, got = _drive(script, _cells("b"))
    fake.ship_answer = "too big: put it on a shared path"
    driver.run(_cells("b"))
    assert [(s, e) for _, s, e in got] == [("error", "too big: put it on a shared path")] * 3


def test_an_interrupted_driver_cancels_every_task():
    def script(model, attempt, cells):
        yield ("hello", {"label": "n1"})
        yield _cell(cells[0])

    class Interrupted(Fake):
        def wait(self, handles, timeout):
            if len(self.submitted) == 2:
                raise KeyboardInterrupt
            return list(handles)

    fake = Interrupted(script)
    with pytest.raises(KeyboardInterrupt):
        Driver(fake, lambda *a: None).run(_cells("a", "b"))
    assert len(fake.cancelled) == 2


def test_a_directory_travels_when_the_node_lacks_it(tiny_models, tmp_path):
    import shutil

    src = tmp_path / "src" / "mamba"
    shutil.copytree(tiny_models["mamba"], src)
    (src / ".work").mkdir()
    (src / ".work" / "optimizer.pt").write_bytes(b"x" * 1000)  # a training run's leftovers never travel
    s = ship.shipment(src)
    assert s.files and not any(name.startswith(".") for name, _ in s.files)
    assert ship.place(s, tmp_path / "a") == str(src.resolve())  # the same files: used in place
    gone = ship.Shipment(str(tmp_path / "elsewhere" / src.name), s.files)
    assert ship.place(gone, tmp_path / "b") is None  # neither here nor shipped: the task says it is missing
    copied = ship.place(ship.Shipment(gone.path, s.files, ship.pack(src)), tmp_path / "c")
    assert copied == str(tmp_path / "c" / src.name) and ship.contents(copied) == s.files


def test_a_task_reports_what_its_node_lacks(tiny_dataset, tmp_path):
    data_dir, name = tiny_dataset
    model = ship.Shipment(str(tmp_path / "not-here"), (("config.json", 10),))
    cfg = {"device": "cpu"}
    msgs = list(rx.measure("not-here", "hf", cfg, _cells("m"), model, ship.shipment(data_dir / name), None,
                           rx.node_facts("cpu", 1)["version"], 1))
    assert [m[0] for m in msgs] == ["hello", "missing"] and msgs[1][1] == ["model"]
    assert msgs[0][1]["label"].endswith("/cpu") and msgs[0][1]["pid"] == os.getpid()
