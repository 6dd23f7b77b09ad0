"""Peak memory of one scene, not of the process: RSS and GPU high-water marks since it started.

``/proc/self/status`` VmHWM is the process's peak since it began, so a scene segmented in
a process that trained a model (``make demo``) or ran a bigger scene before reports *their*
peak. Linux resets it on writing ``5`` to ``/proc/self/clear_refs``; where that is refused
(no /proc, a locked-down container), a thread samples the current RSS instead (every
``SAMPLE_S``: a peak shorter than that can be missed, and the report says "sampled").

Scenes may run at once in one process (threads): resetting the mark for one would lose the
peak another was still measuring. So each measurement is a :class:`Watch`: before any reset
the current mark is folded into every running watch, and a watch's peak is the largest of
what was folded in and the mark now. GPU peaks (``torch.cuda.max_memory_allocated``) are
handled the same way per device.

    start_watch(settings.device)       # at the start of a scene, in the thread that runs it
    ...
    facts.update(scene_facts())        # peak_rss_mb, peak_rss_scope, rss_start_mb, peak_gpu_mb (CUDA)
"""

from __future__ import annotations

import resource
import threading
import time
import weakref
from typing import Any

from .threads import start

SAMPLE_S = 0.02
CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"

_lock = threading.Lock()
_current = threading.local()  # the watch the calling thread started last
_watches: weakref.WeakSet[Watch] = weakref.WeakSet()
_can_reset: bool | None = None  # None: not tried yet
_sampler: threading.Thread | None = None


def _status_kib(field: str) -> int | None:
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _hwm_mb() -> float:
    kib = _status_kib("VmHWM:")
    return kib / 1024.0 if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    kib = _status_kib("VmRSS:")
    return kib / 1024.0 if kib is not None else 0.0


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not let this process."""
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Watch:
    """One scene's memory measurement (see the module docstring); ``scope`` says how it was taken."""

    def __init__(self, device: Any, scope: str) -> None:
        self.device = device
        self.scope = scope  # "scene": reset high-water mark; "sampled": RSS sampled by a thread
        self.start_mb = self.rss_mb = _rss_mb()
        self.gpu_mb = 0.0

    def fold(self, rss_mb: float, gpu_mb: float | None) -> None:
        self.rss_mb = max(self.rss_mb, rss_mb)
        if gpu_mb is not None:
            self.gpu_mb = max(self.gpu_mb, gpu_mb)

    def peak_rss_mb(self) -> float:
        with _lock:
            now = _hwm_mb() if self.scope == "scene" else _rss_mb()
            return max(self.rss_mb, now)

    def peak_gpu_mb(self) -> float | None:
        if not _is_cuda(self.device):
            return None
        with _lock:
            return max(self.gpu_mb, _gpu_peak_mb(self.device))

    def facts(self) -> dict[str, Any]:
        """``peak_rss_mb`` / ``peak_rss_scope`` (and ``peak_gpu_mb`` on CUDA) for a record's facts."""
        out: dict[str, Any] = {"peak_rss_mb": self.peak_rss_mb(), "peak_rss_scope": self.scope,
                               "rss_start_mb": self.start_mb}
        gpu = self.peak_gpu_mb()
        if gpu is not None:
            out["peak_gpu_mb"] = gpu
        return out


def scene_facts() -> dict[str, Any]:
    """The facts of the watch this thread started last, or the process's mark when it started none."""
    watch = getattr(_current, "watch", None)
    if watch is None:
        return {"peak_rss_mb": _hwm_mb(), "peak_rss_scope": "process"}
    return watch.facts()


def start_watch(device: Any = None) -> Watch:
    """Begin measuring a scene's peak memory; it becomes this thread's (:func:`scene_facts`).

    ``device``: the scene's torch device or setting ("auto", "cuda:1", ...), for its GPU peak.
    """
    global _can_reset
    device = _resolve(device)
    with _lock:
        hwm = _hwm_mb()
        gpu = _gpu_peak_mb(device) if _is_cuda(device) else None
        for w in list(_watches):  # what the marks hold so far belongs to the scenes already running
            w.fold(hwm if w.scope == "scene" else _rss_mb(), gpu if _same_device(w.device, device) else None)
        if _can_reset is None or _can_reset:
            _can_reset = _reset_hwm()
        if gpu is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(device)
        watch = Watch(device, "scene" if _can_reset else "sampled")
        _watches.add(watch)
        if not _can_reset:
            _start_sampler()
    _current.watch = watch
    return watch


def _resolve(device: Any) -> Any:
    if str(device) != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _start_sampler() -> None:
    global _sampler
    if _sampler is not None and _sampler.is_alive():
        return

    def run() -> None:
        while True:
            time.sleep(SAMPLE_S)
            rss = _rss_mb()
            with _lock:
                watches = list(_watches)
                for w in watches:
                    w.fold(rss, None)
            if not watches:
                return  # every watch is gone: the next start_watch starts a new sampler

    _sampler = start(run, "peakmem")


def _is_cuda(device: Any) -> bool:
    return device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"


def _same_device(a: Any, b: Any) -> bool:
    return _is_cuda(a) and _is_cuda(b) and str(a) == str(b)


def _gpu_peak_mb(device: Any) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20
