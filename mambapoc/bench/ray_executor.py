"""A sweep across a Ray cluster (`compare --executor ray`): one Ray actor per model run, each running the
same worker process as a local sweep (`bench/runner.py`: subprocess, watchdog, timeouts, stalls, OOM), and
handing every finished cell back to the driver, which records it through the sweep's one writer.

- **Cells as they finish.** The actor (`MeasureRun`) holds the run's `measure` generator; the driver asks
  for its next message, one call at a time, always one call ahead. An actor, not a streaming generator
  task, because Ray Client (`ray://`) runs actors but not streaming tasks. The messages are those
  `task_driver.Driver` reads; the driver loop (dedup, resubmission of lost runs) lives there, without Ray.
- **Lost runs.** Ray's own restarts and retries are off: an actor restarted by Ray would measure again
  the cells it had sent. The driver starts a new actor for the cells not yet received instead.
- **Data.** The dataset directory (small) is put in Ray's object store as a tar once (`shipment.py`). A
  local model directory is used in place where the node has it; else the task says so, and the driver
  ships it through the object store when it is under `SHIP_LIMIT_BYTES`, or records why not. `bundled:`
  models and hub ids resolve on the node (its package, its HF cache).

Ray is imported here only, lazily.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mambapoc.bench.devices import Slot
from mambapoc.bench.display import fmt_bytes
from mambapoc.bench.plan import Planned
from mambapoc.bench.shipment import Shipment, pack, place, shipment
from mambapoc.bench.task_driver import Driver, describe
from mambapoc.errors import UserError

log = logging.getLogger(__name__)

SHIP_LIMIT_BYTES = 2 * 2**30  # a directory larger than this never travels through the object store
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20  # object store of a cluster started here (--ray-address local)
PROBE_TIMEOUT_S = 600.0  # how long the first task (a probe of the cluster) may wait for a worker
TASK_NAME = "MeasureRun"  # the actor's class: its worker's process title is ray::MeasureRun
TMP_PREFIX = "mambapoc-ray-"
INSTALL_HINT = "--executor ray needs Ray: pip install 'mambapoc[ray]' (on the driver and on every node)"

_started = False  # whether this process called ray.init (and so shuts it down)




# ----------------------------------------------------------------------------------------------------------
# What runs on a node.

def node_facts(kind: str, threads: int | None) -> dict:
    """The node and device a task runs on: `label` names it in the cells, `device_name` prices it."""
    from mambapoc import __version__

    host = socket.gethostname() or "?"
    facts = {"host": host, "pid": os.getpid(), "version": __version__, "threads": threads or 1}
    if kind == "cuda":
        gpu = _gpu_id()
        facts.update(label=f"ray:{host}/cuda:{gpu}", device_name=_gpu_name(gpu))
    else:
        from mambapoc.envinfo import cpu_model

        facts.update(label=f"ray:{host}/cpu", device_name=f"cpu: {cpu_model()}")
    return facts


def _gpu_id() -> str:
    try:
        ids = _ray().get_gpu_ids()
    except Exception:  # noqa: BLE001 - outside a Ray task
        ids = []
    return str(ids[0]) if ids else os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"


def _gpu_name(gpu: str) -> str:
    """The GPU's name as nvidia-smi gives it (torch's name too), so that this process, the parent of the
    worker, never holds a CUDA context; from torch where there is no nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", gpu],
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda (unknown GPU)"


def _clean_stale(tmp: str) -> None:
    """Temporary directories of tasks whose worker process was killed (nothing else removes them)."""
    import psutil

    for p in Path(tmp).glob(f"{TMP_PREFIX}*"):
        pid = p.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def measure(model: str, impl: str, cfg: dict, cells: list[Planned], shipped_model: Shipment | None,
            dataset: Shipment, limits, driver_version: str, threads: int | None) -> Iterator[tuple]:
    """One model run's cells on this node, in the same worker process as a local sweep; yields the messages
    `Driver` reads. Runs inside a `MeasureRun` actor, or as a plain generator."""
    from mambapoc.bench.runner import Worker

    facts = node_facts(cfg["device"], threads)
    yield ("hello", facts)
    if facts["version"] != driver_version:
        why = (f"node {facts['host']} runs mambapoc {facts['version']}, the driver {driver_version}: install "
               f"the same version everywhere")
        for cell in cells:
            yield ("cell", cell.cell_id, None, {"status": "error", "error": why})
        return
    _clean_stale(tempfile.gettempdir())
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    try:
        missing = []
        dataset_dir = place(dataset, Path(tmp) / "dataset")
        if dataset_dir is None:
            missing.append("dataset")
        model_path = model if shipped_model is None else place(shipped_model, Path(tmp) / "model")
        if model_path is None:
            missing.append("model")
        if missing:
            yield ("missing", missing, facts)
            return
        worker = Worker(model_path, impl, cfg, dataset_dir, limits)
        try:
            for cell in cells:
                yield ("start", cell.cell_id)
                failed = worker.start()
                measured = {"status": "error", "error": failed} if failed else worker.run(cell, lambda c: None)
                yield ("cell", cell.cell_id, worker.info, measured)
        finally:
            worker.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# The driver's side of Ray.

def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def connect(address: str):
    """Ray, connected to the cluster at `address` (auto, local, HOST:PORT); an existing connection of this
    process is used as it is."""
    global _started
    ray = _ray()
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    _reachable(address if address != "auto" else os.environ.get("RAY_ADDRESS", ""))
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        raise UserError(f"--ray-address {address}: no Ray cluster to connect to ({describe(e)}); start one "
                        f"with `ray start --head`, or pass --ray-address local to start one here") from None
    _started = True
    return ray


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A [ray://]HOST:PORT that does not answer is an error now: ray.init would retry it for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: nothing answers there ({e.strerror or type(e).__name__}); "
                        f"give the head's HOST:PORT (`ray start --head` prints it), its Ray Client "
                        f"ray://HOST:10001, auto, or local") from None


def release() -> None:
    """Disconnect from (or, for one started here, stop) the cluster, if this module connected."""
    global _started
    if _started:
        _started = False
        _ray().shutdown()


def device_kind(ray, device: str) -> str:
    """--device on a cluster: auto is cuda when the cluster has GPUs; Ray assigns each task its GPU."""
    if device == "auto":
        return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: with --executor ray give cpu, cuda or auto; Ray assigns each "
                        f"task its GPU")
    return device


def resources(cfg, kind: str) -> tuple[dict, int | None]:
    """What a task asks Ray for, and the torch threads of its worker: one GPU and `--ray-cpus-per-task`
    (else 1) CPUs for a GPU sweep; on a CPU cluster `--ray-cpus-per-task`, else `--threads`, else 1 CPU.
    The worker computes with `--threads`, else as many threads as CPUs asked for (what Ray's
    OMP_NUM_THREADS would give it too)."""
    if kind == "cuda":
        cpus = cfg.ray_cpus_per_task or 1
        return {"num_gpus": cfg.ray_gpus_per_task, "num_cpus": cpus}, cfg.threads or cpus
    cpus = cfg.ray_cpus_per_task or cfg.threads or 1
    return {"num_gpus": 0, "num_cpus": cpus}, cfg.threads or cpus


def check_cluster(cfg) -> tuple[list[Slot], str, dict[str, dict]]:
    """Connect, resolve the device, and run one probe task with the resources of a sweep's task: the cluster
    can run our code at our version, and its device has a price. Returns the slot cells fall back to (a
    cell names the node that measured it), the dtype and that slot's pricing."""
    from mambapoc import __version__

    ray = connect(cfg.ray_address)
    try:
        kind = device_kind(ray, cfg.device)
        asks, threads = resources(cfg, kind)
        if not _feasible(ray, asks):
            log.warning("no node of the Ray cluster has %s now; waiting up to %g s for one (an autoscaler may "
                        "add it)", _asks(asks), PROBE_TIMEOUT_S)
        # The probe: can the cluster run our code, with what device, at which version.
        ref = ray.remote(max_retries=0)(node_facts).options(name="mambapoc_probe", **asks).remote(kind, threads)
        try:
            facts = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise UserError(f"no node of the Ray cluster took a task asking for {_asks(asks)} within "
                            f"{PROBE_TIMEOUT_S:g} s (is the cluster busy, or without such nodes?)") from None
        except ray.exceptions.RayError as e:
            raise UserError(f"the Ray cluster could not run mambapoc ({describe(e)}): install "
                            f"'mambapoc[ray]', the same version as here, on every node") from None
        if facts["version"] != __version__:
            raise UserError(f"node {facts['host']} runs mambapoc {facts['version']}, this driver "
                            f"{__version__}: install the same version on every node")
        slot = Slot(kind, f"ray:{kind}")
        price = node_price(cfg, facts)
        return [slot], cfg.resolved_dtype(kind), {slot.label: price}
    except BaseException:
        release()
        raise


def node_price(cfg, facts: dict) -> dict:
    """The price of the device a task reported (`node_facts`), as a local sweep prices its own."""
    from mambapoc.bench import cost

    return cost.price_for(facts["device_name"], cfg.pricing_file, cfg.price_per_hour_usd, facts["threads"])


def _feasible(ray, asks: dict) -> bool:
    """Whether some live node has the resources a task asks for (free or not)."""
    need = {"GPU": asks.get("num_gpus") or 0, "CPU": asks.get("num_cpus") or 0}
    try:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    except Exception:  # noqa: BLE001 - no view of the nodes: let the probe find out
        return True
    return any(all(have.get(k, 0) >= v for k, v in need.items()) for have in nodes)


def _asks(asks: dict) -> str:
    names = {"num_gpus": "GPU", "num_cpus": "CPU"}
    return " and ".join(f"{v:g} {names[k]}{'s' if v > 1 else ''}" for k, v in asks.items() if v)


class MeasureRun:
    """A Ray actor: one model run's `measure` on the node that holds it, its messages handed out one call
    at a time."""

    def __init__(self, *args):
        self._messages = measure(*args)

    def next(self) -> tuple | None:
        """The run's next message; None once it has ended."""
        return next(self._messages, None)


@dataclass(eq=False)
class _Run:
    actor: Any
    pending: Any  # the reference of the actor's next message


class RayBackend:
    """A `MeasureRun` actor per model run on the connected cluster."""

    def __init__(self, ray, cfg, kind: str, dtype: str, dataset_dir: str, limits, ship_limit: int = SHIP_LIMIT_BYTES):
        from mambapoc import __version__

        self.ray, self.limits, self.ship_limit, self.version = ray, limits, ship_limit, __version__
        asks, self.threads = resources(cfg, kind)
        self.worker_cfg = {**cfg.to_dict(), "device": kind, "dtype": dtype, "cpus": [], "threads": self.threads}
        # Ray's restarts and retries off: an actor Ray restarted would measure again the cells it had sent.
        self.actor = ray.remote(max_restarts=0, max_task_retries=0)(MeasureRun).options(**asks)
        self.dataset = shipment(dataset_dir)
        if self.dataset.size <= ship_limit:
            self.dataset = replace(self.dataset, blob=ray.put(pack(self.dataset.path)))
        self.models: dict[str, Shipment] = {}

    def _model(self, spec: str) -> Shipment | None:
        """A local model directory travels as a Shipment; bundled models and hub ids resolve on the node."""
        if spec.startswith("bundled:") or not Path(spec).expanduser().is_dir():
            return None
        if spec not in self.models:
            self.models[spec] = shipment(spec)
        return self.models[spec]

    def submit(self, model: str, impl: str, cells: list[Planned]) -> _Run:
        actor = self.actor.remote(model, impl, self.worker_cfg, cells, self._model(model), self.dataset,
                                  self.limits, self.version, self.threads)
        return _Run(actor, actor.next.remote())

    def wait(self, handles: list[_Run], timeout: float) -> list[_Run]:
        by_ref = {h.pending: h for h in handles}
        ready, _ = self.ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        return [by_ref[r] for r in ready]

    def take(self, handle: _Run) -> tuple:
        msg = self.ray.get(handle.pending)
        if msg is None:
            self.cancel(handle)  # the run has ended: its actor's resources go back to the cluster
            raise StopIteration
        handle.pending = handle.actor.next.remote()  # the next cell is measured while this one is written
        if msg[0] == "missing":  # the run ends here: its actor removes its temporary files, then goes
            self.ray.wait([handle.pending], timeout=60)
            self.cancel(handle)
        return msg

    def cancel(self, handle: _Run) -> None:
        try:
            self.ray.kill(handle.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - an actor already gone is stopped enough
            pass

    def ship(self, model: str, missing: list[str], facts: dict | None) -> str | None:
        where = f"node {facts['host']}" if facts else "a node of the cluster"
        fix = "put it on a path every node sees (a shared filesystem or volume) and pass that path"
        if "dataset" in missing:
            size = self.dataset.size
            return (f"dataset directory {self.dataset.path} is not on {where} and is {fmt_bytes(size)}, over the "
                    f"{fmt_bytes(self.ship_limit)} that may travel through Ray's object store: {fix}")
        s = self._model(model)
        if s is None or s.blob is not None:
            return f"model {model} is not on {where}, nor could it be shipped there"
        if s.size > self.ship_limit:
            return (f"model directory {s.path} is not on {where} and is {fmt_bytes(s.size)}, over the "
                    f"{fmt_bytes(self.ship_limit)} that may travel through Ray's object store: {fix}")
        log.warning("model directory %s is not on %s: shipping it (%s) through Ray's object store", s.path,
                    where, fmt_bytes(s.size))
        self.models[model] = replace(s, blob=self.ray.put(pack(s.path)))
        return None


def run(sweep, cells: list[Planned]) -> None:
    """The sweep's cells as Ray tasks; every cell written through `sweep._finish`, priced at the node's
    device. Disconnects at the end if this module connected."""
    ray = connect(sweep.cfg.ray_address)
    try:
        if not cells:
            return
        fallback = sweep.slots[0]
        backend = RayBackend(ray, sweep.cfg, fallback.device, sweep.dtype, sweep.dataset_dir, sweep.limits)

        def on_hello(facts: dict) -> None:
            # A node of a type not seen yet is priced now (a cluster may mix GPU types); no price: an error.
            if facts["label"] not in sweep.pricing:
                sweep.pricing[facts["label"]] = node_price(sweep.cfg, facts)

        def record(planned: Planned, info: dict | None, measured: dict, facts: dict | None) -> None:
            slot = Slot(fallback.device, facts["label"]) if facts and facts["label"] in sweep.pricing else fallback
            if info:
                info = {**info, "spec": planned.model}  # the driver's name, not a copy's path on the node
                sweep.models_info[planned.key] = info
            sweep._finish(planned, info, measured, slot)

        Driver(backend, record, on_hello, sweep.display.cell_started).run(cells)
    finally:
        release()
