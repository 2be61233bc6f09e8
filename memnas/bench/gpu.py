"""`memnas bench gpu`: trials per hour of the quickstart's evaluator at 1, 2 and 4 trials per GPU."""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable

PACKINGS = (1, 2, 4)
"""Trials per GPU measured: ``resources["num_gpus"]`` 1, 0.5 and 0.25."""

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class PeakMemory:
    """Runs ``evaluator`` and adds the cost ``bench_peak_bytes``: the most GPU memory
    PyTorch held for tensors during the trial (the runner resets the counter before it)."""

    evaluator: Callable[..., Any]

    def __call__(self, candidate: Any, ctx: Any) -> Any:
        import torch

        from memnas.measurement import Measurement

        m = Measurement.coerce(self.evaluator(candidate, ctx))
        if ctx.device == "cuda":
            m.costs["bench_peak_bytes"] = float(torch.cuda.max_memory_allocated())
        return m


class BusySampler(threading.Thread):
    """Samples the GPUs' mean busy share (percent of time a kernel ran) every
    ``every_s`` seconds with ``read`` (see `busy_reader`); none without one."""

    def __init__(self, read: Callable[[], list[float]] | None, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples: list[float] = []
        self.stopping = threading.Event()
        self._read = read

    def run(self) -> None:
        while self._read is not None and not self.stopping.wait(self.every_s):
            try:
                values = self._read()
            except Exception:  # a failed sample is left out
                continue
            if values:
                self.samples.append(sum(values) / len(values))

    def stop(self) -> float | None:
        """Stops sampling; the mean busy percent over the samples, or None without any."""
        self.stopping.set()
        if self.is_alive():
            self.join()
        return round(statistics.fmean(self.samples), 1) if self.samples else None


def busy_reader() -> tuple[str, Callable[[], list[float]] | None]:
    """``(name, reader)`` of the first way to read every GPU's utilisation that answers
    here: NVML through ``pynvml`` (what ``torch.cuda.utilization`` asks), then polling
    ``nvidia-smi --query-gpu=utilization.gpu``; ``("none", None)`` without either."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                   for i in range(pynvml.nvmlDeviceGetCount())]

        def nvml() -> list[float]:
            return [float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles]

        nvml()
        return "nvml (pynvml)", nvml
    except Exception:  # no pynvml, or no NVML library: try the next
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        def nvidia_smi() -> list[float]:
            out = subprocess.run([smi, "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10, check=True)
            return [float(line) for line in out.stdout.split() if line.strip()]

        try:
            nvidia_smi()
            return "nvidia-smi", nvidia_smi
        except Exception:  # present but failing
            pass
    return "none", None


def _setup(quick: bool, steps: int | None) -> tuple[Any, Any]:
    """The space and evaluator: the quickstart's (MQAR, memory_space of every mixer, the
    same trainer), at a realistic size; small with ``quick``."""
    from memnas.evaluators import TrainEvaluator
    from memnas.evaluators.mqar import MQAR
    from memnas.searchspace import memory_space

    if quick:
        vocab, seq, pairs, widths, batch = 256, 64, 8, (32, 64), 32
    else:
        vocab, seq, pairs, widths, batch = 8192, 256, 32, (128, 256, 512), 64
    space = memory_space(vocab_size=vocab, max_len=seq, d_model=widths)
    evaluator = TrainEvaluator(task=MQAR(vocab_size=vocab, seq_len=seq, num_kv_pairs=pairs),
                               steps=steps or (50 if quick else 500), batch_size=batch,
                               lr=3e-3, weight_decay=0.1, eval_examples=512)
    return space, PeakMemory(evaluator)


def _one_packing(url: str, per_gpu: int, gpus: int, trials: int, space: Any,
                 evaluator: Any, timeout_s: float,
                 read: Callable[[], list[float]] | None) -> dict[str, Any]:
    """Runs ``trials`` trials at ``per_gpu`` trials per GPU; their figures."""
    import memnas
    from memnas.store import Store

    name = f"gpu-{per_gpu}-per-gpu"
    workers = per_gpu * gpus
    exp = memnas.Experiment(name=name, space=space, evaluator=evaluator, algorithm="random",
                            objectives={"accuracy": "max"}, seed=3, store=url, cache=False,
                            resources={"num_cpus": 1, "num_gpus": 1 / per_gpu},
                            timeout_s=timeout_s)
    sampler = BusySampler(read)
    sampler.start()
    start = time.perf_counter()
    try:
        exp.run(max_trials=trials, workers=workers, executor="ray")
    finally:
        busy = sampler.stop()
    wall = time.perf_counter() - start
    store = Store(url, read_only=True)
    rows = store.trials(store.require_experiment(name)["id"])
    store.close()
    done = [t for t in rows if t["status"] == "completed"]
    peaks = [t["costs"]["bench_peak_bytes"] / GIB for t in done
             if "bench_peak_bytes" in (t["costs"] or {})]
    return {"num_gpus": 1 / per_gpu, "workers": workers, "wall_s": round(wall, 1),
            "completed": len(done), "failed": len(rows) - len(done),
            "out_of_memory": sum("out of GPU memory" in (t["error"] or "") for t in rows),
            "trials_per_hour": round(len(done) / wall * 3600, 1),
            "gpu_busy_pct": busy, "busy_samples": len(sampler.samples),
            "peak_gib_mean": round(statistics.fmean(peaks), 3) if peaks else None,
            "peak_gib_max": round(max(peaks), 3) if peaks else None}


def run(quick: bool = False, trials: int | None = None, steps: int | None = None,
        timeout_s: float = 1800.0) -> dict[str, Any]:
    """Runs the quickstart's evaluator at 1, 2 and 4 trials per GPU on local Ray.

    Each packing runs the same ``trials`` random candidates (one seed) as its own
    experiment in a throwaway SQLite store, on ``trials per GPU x GPUs`` workers with
    ``num_gpus`` 1, 0.5 and 0.25 (each trial's memory capped at its share by the
    runner); Ray is started once for the three (its start is in no wall time). On a
    machine where torch sees no CUDA GPU it prints one line and returns
    ``{"cuda": False}``.

    Args:
      quick: a small version (smoke tests): 8 trials per packing of a small model
        trained 50 steps.
      trials: trials per packing (default 24, enough for 4 per GPU to be busy).
      steps: training steps per trial (default 500; the quickstart's).
      timeout_s: time limit of one trial.

    Returns:
      ``cuda``, ``device`` (the GPU's name), ``gpus``, ``gpu_gib``, ``trials``,
      ``steps``, ``busy_sampler`` (what measured the GPUs' busy share: "nvml (pynvml)",
      "nvidia-smi" or "none") and ``packings``: for each of 1, 2 and 4 trials per GPU,
      ``trials_per_hour``, ``gpu_busy_pct`` (mean busy percent of the GPUs sampled
      every 0.5 s during the run; None without a sampler), ``peak_gib_mean`` and
      ``peak_gib_max`` (a trial's peak GPU memory), ``wall_s``, ``completed``,
      ``failed``, ``out_of_memory``, ``workers``; and ``speedup`` of 2 and 4 per GPU
      over 1 (trials per hour).
    """
    import torch

    if not torch.cuda.is_available():
        print("gpu: no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure")
        return {"cuda": False}
    from memnas.runner.executors import start_ray, stop_ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    trials = trials or (8 if quick else 24)
    gpus = torch.cuda.device_count()
    space, evaluator = _setup(quick, steps)
    how, read = busy_reader()
    folder = tempfile.mkdtemp(prefix="memnas-gpu-")
    url = f"sqlite:///{os.path.join(folder, 'gpu.db')}"
    started = start_ray(None, max(os.cpu_count() or 1, max(PACKINGS) * gpus))
    try:
        packings = {k: _one_packing(url, k, gpus, trials, space, evaluator, timeout_s, read)
                    for k in PACKINGS}
    finally:
        if started:
            stop_ray()
    base = packings[1]["trials_per_hour"]
    figures = {"cuda": True, "device": torch.cuda.get_device_name(0), "gpus": gpus,
               "gpu_gib": round(torch.cuda.get_device_properties(0).total_memory / GIB, 1),
               "trials": trials, "steps": evaluator.evaluator.steps,
               "busy_sampler": how, "packings": packings,
               "speedup": {k: round(p["trials_per_hour"] / base, 2) if base else None
                           for k, p in packings.items() if k != 1}}
    print(f"gpu: {trials} quickstart trials ({figures['steps']} steps) per packing on "
          f"{gpus} x {figures['device']} ({figures['gpu_gib']} GiB); GPU busy share by "
          f"{figures['busy_sampler']}")
    for k, p in packings.items():
        busy = "n/a" if p["gpu_busy_pct"] is None else f"{p['gpu_busy_pct']:.0f}%"
        peak = "n/a" if p["peak_gib_max"] is None else \
            f"{p['peak_gib_mean']:.2f} GiB mean, {p['peak_gib_max']:.2f} GiB max"
        print(f"  {k} per GPU: {p['trials_per_hour']:.0f} trials/h "
              f"(x{p['trials_per_hour'] / base if base else 0:.2f}), GPU busy {busy}, "
              f"peak memory {peak}, {p['completed']} completed, {p['failed']} failed "
              f"({p['out_of_memory']} out of GPU memory) in {p['wall_s']:.0f} s")
    return figures
