"""What a run prints while it trains or evaluates, on stderr.

On a terminal: a live bar. Its rate and time estimate come from the last few log intervals of
training after the warm-up, not from tqdm's own count: the random warm-up steps several times
faster than training, so tqdm's rate and estimate would be wrong for most of the run.
Without a terminal (a log file, ``compare``'s ``train.log``, a cluster job): one plain line per
log interval, readable with ``tail``, and never a carriage return.
Evaluations say that they are running and how far they are (episodes finished out of all).
"""

from __future__ import annotations

import sys
import time
from collections import deque

from tqdm import tqdm

WINDOW = 5  # log intervals that the rate and the time estimate average over
PLAIN_EVAL_EVERY_S = 30.0  # without a terminal: an evaluation's progress line at most this often


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_steps(n: float) -> str:
    """50000 -> 50k, 1500000 -> 1.5M."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


class TrainProgress:
    def __init__(self, total: int, start: int, warmup: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.warmup = total, warmup
        self.marks: deque[tuple[float, int]] = deque(maxlen=WINDOW + 1)  # (time, env steps) after the warm-up
        self.excluded_s = 0.0  # one-off time (torch.compile's first calls) left out of the rate
        self.bar: tqdm | None = None
        if self.tty:
            self.bar = tqdm(
                total=total,
                initial=start,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=1.0,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )

    def advance(self, env_steps: int) -> None:
        if self.bar is not None:
            self.bar.update(env_steps)

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` of one-off work out of the rate and the estimate: compiling the
        update takes a minute once, and would otherwise make the next estimates hours long."""
        self.excluded_s += seconds

    def steady_rate(self) -> float | None:
        """Env steps per second over the last WINDOW log intervals after the warm-up."""
        if len(self.marks) < 2:
            return None
        (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def interval(self, env_steps: int, env_rate: float, update_rate: float, success: float | None) -> None:
        """At every log interval; ``env_rate`` and ``update_rate`` are over that interval."""
        if env_steps >= self.warmup:
            self.marks.append((time.time() - self.excluded_s, env_steps))
        rate = self.steady_rate()
        if rate:
            eta = f"ETA {format_duration((self.total - env_steps) / rate)}"
        else:
            eta = "ETA after warm-up" if env_steps < self.warmup else "ETA at next log"
        fields = [
            f"env/s {env_rate:.0f}",
            f"upd/s {update_rate:.1f}",
            f"eval success {'-' if success is None else f'{success:.2f}'}",
            eta,
        ]
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(fields), refresh=False)
        else:
            pct = 100.0 * env_steps / self.total
            print(
                f"{env_steps}/{self.total} env steps ({pct:.0f}%)  " + "  ".join(fields), file=self.stream, flush=True
            )

    def message(self, line: str) -> None:
        """A line of its own: above the bar on a terminal, between the progress lines otherwise."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def evaluation(self, env_steps: int) -> EvalProgress:
        return EvalProgress(f"evaluating at {env_steps} env steps", self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EvalProgress:
    """The ``progress`` callback of ``envs.evaluation.evaluate``: episodes finished out of all.
    A second bar on a terminal (gone when it ends); otherwise a line at the start, at most one
    every PLAIN_EVAL_EVERY_S, and one at the end."""

    def __init__(self, what: str, stream=None):
        self.what, self.stream = what, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.bar: tqdm | None = None
        self.start = self.last_line = time.time()
        self.started = False
        self.done = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.tty:
            if self.bar is None:
                self.bar = tqdm(
                    total=total,
                    desc=self.what,
                    unit="episode",
                    file=self.stream,
                    leave=False,
                    dynamic_ncols=True,
                    mininterval=0.5,
                )
            self.bar.update(done - self.bar.n)
            return
        now = time.time()
        if not self.started:
            self.started = True
            print(f"{self.what}: {total} episodes", file=self.stream, flush=True)
        elif done < total and now - self.last_line >= PLAIN_EVAL_EVERY_S:
            self.last_line = now
            print(
                f"{self.what}: {done}/{total} episodes ({format_duration(now - self.start)})",
                file=self.stream,
                flush=True,
            )

    def finish(self, success_mean: float) -> None:
        self._end(f"mean success {success_mean:.2f}")

    def abandon(self) -> None:
        """The evaluation was stopped part-way (a stop signal); it runs again, whole, on resume."""
        self._end(f"stopped after {self.done}/{self.total} episodes, to be run again on resume")

    def _end(self, what: str) -> None:
        if self.bar is not None:
            self.bar.close()
        line = f"{self.what}: {what} ({format_duration(time.time() - self.start)})"
        if self.bar is not None:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
