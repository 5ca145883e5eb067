"""What an engine step costs, fitted online from the steps the engine actually ran.

Speculation pays while a verified token is nearly free and stops paying as batches grow
(issue 18: on vLLM's CPU backend each verified token costs ~3-10 % of a step; on GPUs the
same happens at larger batches). Nothing here assumes where that happens: a step's time is
fitted as ``seconds = intercept + slope * x`` (x: the tokens the step scheduled) by least
squares over every step measured, older steps weighing less (exponential forgetting, so the
fit follows the operating point: on a GPU the true curve is flat, then steep, and a local
line is what the draft-length decision needs). The same fit times the proposer's own
drafting against the number of requests it drafted for.

Two things keep the fit sane where its evidence is poor:

- a ridge pulls the slope towards a prior with the weight of ``ridge`` samples one unit of
  x apart; it never decays, so a run of steps with one token count leaves the slope defined
  instead of winding up (the classic failure of recursive least squares with forgetting).
  The prior (``prior_slope=None``) is the pessimistic line through the origin, mean seconds
  over mean x: without spread in x every token is charged its share of the step, so a
  planner reading the fit drafts less, and the shorter steps that follow are the spread the
  fit needed (a prior of 0, "tokens are free", would draft to the cap on every step and
  never learn otherwise: measured on the synthetic engine of the tests);
- a sample far above the fit (an idle gap between requests is no step) is clipped to
  ``outlier_factor`` times the larger of its prediction and the mean step. Before ``warmup_samples`` have been seen there is
  no prediction: those samples are held back and enter the fit together, each clipped to
  ``outlier_factor`` times their median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LinearCostFit:
    """``seconds = intercept + slope * x``: weighted least squares with exponential
    forgetting and a ridge on the slope. ``ready`` once ``warmup_samples`` were recorded."""

    forgetting: float = 0.99  # weight of a sample after the next one (~100 samples memory)
    ridge: float = 1.0  # how many samples, one unit of x apart, the prior slope is worth
    # Seconds per unit of x where x has no spread; None: mean seconds / mean x.
    prior_slope: float | None = None
    outlier_factor: float = 4.0  # a sample above this many predictions is clipped to it
    warmup_samples: int = 8  # samples held back (and median-clipped) before the first fit
    num_samples: int = field(default=0, init=False)
    # Decayed sums: weight, x, y, x*x, x*y.
    _w: float = field(default=0.0, init=False, repr=False)
    _x: float = field(default=0.0, init=False, repr=False)
    _y: float = field(default=0.0, init=False, repr=False)
    _xx: float = field(default=0.0, init=False, repr=False)
    _xy: float = field(default=0.0, init=False, repr=False)
    # Samples held back until the warm-up ends (None: the fit is ready).
    _held: list[tuple[float, float]] | None = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.forgetting <= 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting}")
        if not self.ridge > 0.0:
            raise ValueError(f"ridge must be > 0, got {self.ridge}")
        if self.prior_slope is not None and not self.prior_slope >= 0.0:
            raise ValueError(f"prior_slope must be >= 0, got {self.prior_slope}")
        if not self.outlier_factor > 1.0:
            raise ValueError(f"outlier_factor must be > 1, got {self.outlier_factor}")
        if self.warmup_samples < 1:
            raise ValueError(f"warmup_samples must be >= 1, got {self.warmup_samples}")

    @property
    def ready(self) -> bool:
        return self._held is None

    def record(self, x: float, seconds: float) -> None:
        """One measured sample: ``seconds`` for ``x`` (tokens, requests)."""
        if not x >= 0.0:
            raise ValueError(f"x must be >= 0, got {x}")
        if not seconds >= 0.0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self.num_samples += 1
        if self._held is None:
            # Against the mean step too: a line through the origin (the prior, before x has
            # spread) predicts next to nothing for small x, where real steps are not short.
            typical = max(self.predict(x), self._y / self._w)
            self._add(float(x), min(float(seconds), self.outlier_factor * typical))
            return
        self._held.append((float(x), float(seconds)))
        if len(self._held) >= self.warmup_samples:
            top = self.outlier_factor * statistics.median(s for _, s in self._held)
            for hx, hs in self._held:
                self._add(hx, min(hs, top))
            self._held = None

    def _add(self, x: float, y: float) -> None:
        f = self.forgetting
        self._w = f * self._w + 1.0
        self._x = f * self._x + x
        self._y = f * self._y + y
        self._xx = f * self._xx + x * x
        self._xy = f * self._xy + x * y

    @property
    def slope(self) -> float:
        """Seconds per unit of x (>= 0: a negative fit is noise, read as free)."""
        if self._w == 0.0:
            return self.prior_slope or 0.0
        mx, my = self._x / self._w, self._y / self._w
        prior = self.prior_slope
        if prior is None:
            prior = my / mx if mx > 0.0 else 0.0
        cxx = max(0.0, self._xx - self._w * mx * mx)
        cxy = self._xy - self._w * mx * my
        return max(0.0, (cxy + self.ridge * prior) / (cxx + self.ridge))

    @property
    def intercept(self) -> float:
        """Seconds at x = 0 (>= 0)."""
        if self._w == 0.0:
            return 0.0
        return max(0.0, (self._y - self.slope * self._x) / self._w)

    def predict(self, x: float) -> float:
        return self.intercept + self.slope * x


class StepTimer:
    """Turns one call per engine step into step-cost samples.

    The engine calls ``begin_step(tokens)`` at the start of each step's proposer call with
    the tokens that step scheduled: the time since the previous call's start is what that
    step cost, less the time spent drafting in the previous call (timed apart with
    ``drafting``, since whether to draft is what the caller decides with this fit). The
    clock is injected, so the timing logic is tested deterministically.
    """

    def __init__(
        self,
        step_cost: LinearCostFit,
        draft_cost: LinearCostFit,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.step_cost = step_cost
        self.draft_cost = draft_cost
        self._clock = clock
        self._last_start: float | None = None
        self._drafting_seconds = 0.0

    def begin_step(self, scheduled_tokens: int) -> None:
        if scheduled_tokens < 0:
            raise ValueError(f"scheduled_tokens must be >= 0, got {scheduled_tokens}")
        now = self._clock()
        if self._last_start is not None:
            seconds = max(0.0, now - self._last_start - self._drafting_seconds)
            self.step_cost.record(scheduled_tokens, seconds)
        self._last_start = now
        self._drafting_seconds = 0.0

    def start_drafting(self) -> float:
        return self._clock()

    def end_drafting(self, started: float, num_requests: int) -> None:
        seconds = max(0.0, self._clock() - started)
        self._drafting_seconds += seconds
        self.draft_cost.record(num_requests, seconds)
