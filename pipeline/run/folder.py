"""Each input's output folder: where it is, and getting it ready for a run.

Every input gets ``OUT/<name>/``, ``<name>`` being the file name without its suffix. A run
starts by making the folder unfinished: the old record and QA reports go (they describe
outputs about to be replaced), and so do the temporary files of an interrupted run.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputError
from ..files import remove_partials
from ..readers import input_stem
from .record import RECORD_NAME

QA_REPORTS = ("qa.json", "qa.html")


def scene_dir_for(input_path: str | Path, out_root: str | Path) -> Path:
    """Each input gets its own folder under the output root, named after the file."""
    return Path(out_root) / input_stem(input_path)


def prepare_scene_dir(scene_dir: Path) -> None:
    """Create the folder, check it is writable, drop the old record and QA reports, and the
    temporary files of an interrupted run."""
    try:
        scene_dir.mkdir(parents=True, exist_ok=True)
        probe = scene_dir / ".segpipe-write-test"
        probe.write_bytes(b"")
        probe.unlink()
        stale = [scene_dir / n for n in (RECORD_NAME, *QA_REPORTS)]
        stale += [*scene_dir.glob("qa_t*.json"), *scene_dir.glob("qa_t*.html")]  # a series' per-volume reports
        for path in stale:
            path.unlink(missing_ok=True)
        remove_partials(scene_dir)
    except OSError as exc:
        raise OutputError(f"{scene_dir}: output folder is not writable ({exc.strerror or exc})") from exc
