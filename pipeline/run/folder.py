"""Each input's output folder, and the two promises around it: the last good outputs survive a
failed or killed run, and two runs on the same output never destroy each other's work.

``OUT/<name>/`` holds one run's complete outputs (mask, QA report, record), or nothing. A run

1. takes the scene's lock: an OS file lock (``flock``) on ``OUT/.segpipe/locks/<name>.lock``,
   released by the kernel when the process ends, so a killed run never leaves a stale lock;
   a second run finds it taken and says who holds it (:class:`SceneBusy`);
2. writes everything into a fresh staging folder ``OUT/.segpipe/staging/<id>/<name>/`` on
   the same file system (named like the final folder, so nothing in it needs to know);
3. on success swaps it into place in one step (Linux ``renameat2(RENAME_EXCHANGE)``; two
   renames where that is missing, which the next run repairs), then removes the old folder
   and the scene's failure record;
4. on failure removes the staging folder: ``OUT/<name>/`` is exactly as it was.

Leftovers (staging folders and partial files of killed runs) are removed only by a run that
holds the scene's lock, so never while a live run is writing them. The name of a failed
scene's last error is kept in ``OUT/.segpipe/errors/<name>.json`` for the run report.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..errors import OutputError, SegpipeError
from ..files import RECORD_NAME, STATE, FileLock, remove_partials
from ..readers import input_stem

log = logging.getLogger(__name__)


class SceneBusy(SegpipeError, BlockingIOError):
    """Another live run holds the scene's lock (it is being written right now)."""


class SceneChanged(SceneBusy):
    """Another run completed the scene between the caller's look at it and this run's lock.

    The caller decided to redo the scene from what ``OUT/<name>/`` held then; that is no
    longer what it holds, so the decision is the caller's to make again (usually: up to date).
    """


def record_token(scene_dir: str | Path) -> str:
    """Which complete run ``scene_dir`` holds: its record's inode and change time ('' for none).

    Every completed run swaps in a new folder with a new ``record.json``, so the token changes
    whenever another run completes the scene.
    """
    try:
        st = (Path(scene_dir) / RECORD_NAME).stat()
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}"


def scene_dir_for(input_path: str | Path, out_root: str | Path) -> Path:
    """Each input gets its own folder under the output root, named after the file."""
    return Path(out_root) / input_stem(input_path)


class SceneFolder:
    """``OUT/<name>/`` and its bookkeeping under ``OUT/.segpipe/``; see the module docstring."""

    def __init__(self, out_root: str | Path, name: str) -> None:
        self.root, self.name = Path(out_root), name
        self.final = self.root / name
        self.state = self.root / STATE
        self.staging: Path | None = None
        self._lock = FileLock(self.state / "locks" / f"{name}.lock")

    @classmethod
    def for_input(cls, input_path: str | Path, out_root: str | Path) -> SceneFolder:
        return cls(out_root, input_stem(input_path))

    def begin(self, wait_s: float = 0.0, expect: str | None = None) -> Path:
        """Lock the scene, clear what killed runs left, and make a fresh staging folder for this run.

        ``expect``: the :func:`record_token` the caller saw when it decided to (re)do the scene;
        if another run has completed it since, :class:`SceneChanged` (nothing is touched).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not self._lock.acquire(wait_s):
                raise SceneBusy(f"{self.final}: being written by another run ({self._lock.holder()}); "
                                "not touched by this one")
            try:
                self._repair()
                if expect is not None and record_token(self.final) != expect:
                    raise SceneChanged(f"{self.final}: completed by another run meanwhile")
                self.staging = self.state / "staging" / uuid.uuid4().hex[:8] / self.name
                self.staging.mkdir(parents=True)
            except BaseException:
                self._lock.release()
                raise
        except SceneBusy:
            raise
        except OSError as exc:
            raise OutputError(f"{self.final}: output folder is not writable ({exc.strerror or exc})") from exc
        return self.staging

    def commit(self) -> Path:
        """Swap the staging folder into place (the run is complete); returns ``OUT/<name>/``."""
        assert self.staging is not None, "begin() first"
        try:
            if self.final.exists():
                _exchange(self.staging, self.final)  # staging now holds the old folder
            else:
                os.rename(self.staging, self.final)
            shutil.rmtree(self.staging.parent, ignore_errors=True)
            (self.state / "errors" / f"{self.name}.json").unlink(missing_ok=True)
        finally:
            self.staging = None
            self._lock.release()
        return self.final

    def abort(self) -> None:
        """Remove this run's staging folder; ``OUT/<name>/`` stays exactly as it was (safe to repeat)."""
        if self.staging is not None:
            shutil.rmtree(self.staging.parent, ignore_errors=True)
            self.staging = None
        self._lock.release()

    def _repair(self) -> None:
        """Under the lock: finish a swap a killed run left half done, remove stale staging folders
        and the partial files an older version left in the folder itself."""
        old = self.state / "old" / self.name
        staged = [s for s in (self.state / "staging").glob(f"*/{self.name}") if s.is_dir()]
        if not self.final.exists():
            done = [s for s in staged if (s / RECORD_NAME).is_file()]
            if done:  # the new folder was complete; the second rename never happened
                os.rename(done[0], self.final)
            elif old.exists():
                os.rename(old, self.final)
        for s in staged:
            shutil.rmtree(s.parent, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        remove_partials(self.final)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step where the kernel can; else two renames (repaired by ``_repair``)."""
    libc = _libc()
    if libc is not None:
        if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # e.g. NFS: fall back
            raise OSError(err, os.strerror(err), str(b))
    old = b.parent / STATE / "old" / b.name
    old.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "renameat2") else None
    except OSError:
        return None
