"""Progress of long MD runs: a bar on a terminal, periodic log lines in a batch job.

On a terminal (stderr is a tty) one line is redrawn in place with the simulated time,
the speed in ns/day and the estimated time left. Elsewhere (a cluster job, Snakemake's
log files) a log line is written every ``log_every_s`` seconds and at the end.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("softness.md")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Report the progress of ``total_steps`` MD steps of ``timestep_fs`` each.

    Args:
      label: what is running (e.g. "quench", "run 3000 K").
      total_steps: steps of the whole run.
      timestep_fs: length of one step.
      start_step: where a resumed run starts.
      stream: where the bar goes (stderr by default).
      tty: force bar (True) or log lines (False); default: ``stream.isatty()``.
      log_every_s: seconds between log lines when not on a terminal.
    """

    def __init__(self, label: str, total_steps: int, timestep_fs: float, *, start_step: int = 0,
                 stream=None, tty: bool | None = None, log_every_s: float = 60.0):
        self.label = label
        self.total = max(int(total_steps), 1)
        self.dt_fs = timestep_fs
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every_s = log_every_s
        self.start_step = start_step
        self.t0 = time.perf_counter()
        self._last_draw = -1e9
        self.step = start_step

    def _text(self, step: int) -> str:
        elapsed = time.perf_counter() - self.t0
        done = step - self.start_step
        ps = step * self.dt_fs / 1000
        total_ps = self.total * self.dt_fs / 1000
        if done > 0 and elapsed > 0:
            ns_day = done * self.dt_fs * 1e-6 / (elapsed / 86400)
            eta = _duration((self.total - step) * elapsed / done)
            speed = f"{ns_day:.3g} ns/day, ETA {eta}"
        else:
            speed = "-- ns/day, ETA --"
        return f"{self.label}: {ps:.1f}/{total_ps:.1f} ps ({100 * step / self.total:.0f}%), {speed}"

    def update(self, step: int) -> None:
        """Report that the run has reached ``step``."""
        self.step = step
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= 0.5 or step >= self.total:
                width = 30
                filled = int(width * min(step, self.total) / self.total)
                bar = "#" * filled + "." * (width - filled)
                self.stream.write(f"\r[{bar}] {self._text(step)}\033[K")
                self.stream.flush()
                self._last_draw = now
        elif now - self._last_draw >= self.log_every_s:
            if self._last_draw > -1e9:  # not at the very start
                log.info(self._text(step))
            self._last_draw = now

    def close(self) -> None:
        """Finish the bar (terminal) or write the final log line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        log.info(self._text(self.step) + f", {_duration(time.perf_counter() - self.t0)} wall")
