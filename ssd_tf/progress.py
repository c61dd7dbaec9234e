"""Progress of long commands on stderr: a bar with a count and an ETA on a terminal, a plain line
every 10 % or so elsewhere (CI logs, files), nothing when silenced (the scripts' ``--quiet``, or
``SSD_TF_QUIET=1``). Standard library only: every layer may use it."""

import os
import sys
import time

_quiet = os.environ.get("SSD_TF_QUIET", "") not in ("", "0")


def set_quiet(quiet=True):
    """Silence (or restore) every progress display of this process."""
    global _quiet
    _quiet = bool(quiet)


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Counts ``total`` steps of ``label``: ``update(n)`` after each, ``close()`` at the end (or use
    it as a context manager). ``stream`` defaults to stderr; ``terminal`` to whether it is one."""

    def __init__(self, total, label, stream=None, terminal=None, unit="images"):
        self.total = max(int(total or 0), 0)
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self.start = time.monotonic()
        self._shown = 0.0
        self._tenths = 0  # tenths of the total reported so far, in a log
        self._finished = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _text(self):
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            share = self.done / self.total
            return (f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0%}), {rate:.1f}/s, "
                    f"{_clock(elapsed)} elapsed, ETA {_clock(left)}")
        return f"{self.label}: {self.done} {self.unit}, {rate:.1f}/s, {_clock(elapsed)} elapsed"

    def update(self, n=1):
        self.done += n
        if _quiet:
            return
        now = time.monotonic()
        if self.terminal:
            if now - self._shown >= 0.2 or (self.total and self.done >= self.total):
                width = 24
                filled = int(width * self.done / self.total) if self.total else 0
                bar = f"[{'#' * filled}{'.' * (width - filled)}] " if self.total else ""
                self.stream.write(f"\r{bar}{self._text()}\x1b[K")
                self.stream.flush()
                self._shown = now
        elif self.total and min(10 * self.done // self.total, 10) > self._tenths:
            self._tenths = min(10 * self.done // self.total, 10)
            self.stream.write(self._text() + "\n")
            self.stream.flush()

    def close(self):
        if self._finished:
            return
        self._finished = True
        if _quiet:
            return
        if self.terminal:
            self.stream.write("\r" + self._text() + "\x1b[K\n")
            self.stream.flush()
        elif not self.total or self.done < self.total:
            self.stream.write(self._text() + "\n")
            self.stream.flush()


def track(iterable, total, label, unit="images", count=None):
    """Yield from ``iterable`` while showing progress; ``count(item)`` says how many steps an item
    is (default 1: e.g. the images of a batch)."""
    with Progress(total, label, unit=unit) as progress:
        for item in iterable:
            yield item
            progress.update(count(item) if count else 1)
