"""Progress bars for the CLI commands (``run``, ``batch``, ``train``): one tqdm bar on stderr.

Terminal only: on a pipe or a log file the bar is off and the log lines carry the news.
While a bar is shown, console log handlers (the root logger's and Prefect's own) write
through ``tqdm.contrib.logging.logging_redirect_tqdm``, which clears the bar, prints the
line and redraws the bar below it, so the two never splice into one line.

The bar opens at the first report with ``initial`` set to the work already done, and
advances by ``update(delta)``: its rate then counts from the first report on, instead of
dividing everything done so far by the microseconds since the bar appeared.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from typing import IO, Any


def console_loggers() -> list[logging.Logger]:
    """Loggers with a handler that writes to this process's stdout or stderr (root first)."""
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    return [lg for lg in loggers if any(_is_console(h) for h in lg.handlers)]


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)


class Bar:
    """A tqdm bar over ``unit`` items that opens at the first :meth:`update`.

    Args:
        unit: what is counted ("tile", "scene", "step").
        disable: no bar at all (``--quiet``); a stream that is not a terminal disables it too.
        file: where to draw (default stderr).
        leave: keep the finished bar on screen.
    """

    def __init__(self, unit: str, *, disable: bool = False, file: IO[str] | None = None, leave: bool = False) -> None:
        self.unit, self.leave = unit, leave
        self.file = file if file is not None else sys.stderr
        self.disable = disable or not _isatty(self.file)
        self.bar: Any = None
        self._redirect = ExitStack()

    def update(self, done: int, total: int, postfix: str = "") -> None:
        """``done`` of ``total`` items so far; ``postfix`` is shown after the rate."""
        if self.disable:
            return
        if self.bar is None:
            self._open(done, total)
        self.bar.total = total
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)  # refreshes (tqdm limits redraws to mininterval)
        else:
            self.bar.refresh()

    def _open(self, initial: int, total: int) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        loggers = console_loggers()
        levels = [next(h.level for h in lg.handlers if _is_console(h)) for lg in loggers]
        self._redirect.enter_context(logging_redirect_tqdm(loggers))
        for lg, level in zip(loggers, levels):  # tqdm's handler would pass what the console one filtered out
            lg.handlers[-1].setLevel(level)
        self.bar = tqdm(total=total, initial=initial, unit=self.unit, file=self.file, dynamic_ncols=True,
                        leave=self.leave)

    def write(self, line: str) -> None:
        """A line above the bar (or plainly, without one)."""
        if self.bar is not None:
            self.bar.write(line, file=self.file)
        else:
            print(line, file=self.file)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
