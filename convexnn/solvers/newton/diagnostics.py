"""What a :func:`~convexnn.solvers.newton.driver.polish` call reports (:class:`PolishInfo`, summed over the
output columns) and the wall-clock deadline its output columns share (:class:`_Deadline`)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field


def _gib(b: float) -> str:
    """A byte count for messages: 12.9 GiB, 3.3 MiB, 512 KiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b / 2**10:.0f} KiB"


class _Deadline:
    """The wall-clock end of a :func:`polish` call (``time.perf_counter`` seconds, None: none), which another
    thread can also bring forward (:meth:`stop`): when output columns run in parallel and one of them raises
    (e.g. KeyboardInterrupt from a progress callback), the others end at their next check. An output column runs
    to its :meth:`share` of the time left, which also passes when its parent does."""

    def __init__(self, at: float | None, parent: _Deadline | None = None) -> None:
        self.at = at
        self.parent = parent
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def passed(self) -> bool:
        return (self._stop.is_set() or (self.parent is not None and self.parent.passed())
                or (self.at is not None and time.perf_counter() > self.at))

    def share(self, parts: int) -> _Deadline:
        """A deadline ``1/parts`` of the time left from now (no limit without one): the columns still to run each
        get an equal share, and what one leaves unused goes to those after it. Without shares the columns after
        the first few would start past the deadline and come back at their starting point (vehicle, 4 columns,
        max_time = 2/3 of the full solve: the certificate's relative gap was 0.54, the sum over columns being
        dominated by the unstarted ones)."""
        if self.at is None:
            return self
        now = time.perf_counter()
        return _Deadline(now + max(self.at - now, 0.0) / max(parts, 1), parent=self)


@dataclass
class PolishInfo:
    """Diagnostics of one call of :func:`polish` (summed over output columns)."""

    method: str = ""
    newton_iterations: int = 0
    ipm_iterations: int = 0
    ipm_gap: float = math.inf  # the interior-point method's best certified relative gap (worst column)
    # a result in float32: the rise of its objective from rounding the float64 solution, relative (0 in float64)
    rounding_cost: float = 0.0
    rows_added: int = 0
    rows_released: int = 0
    blocks_entered: int = 0
    blocks_dropped: int = 0
    converged: bool = True
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tick(self, key: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[key] = self.timings.get(key, 0.0) + t - t0
        return t

    def absorb(self, other: PolishInfo, method: str) -> None:
        """Take in the diagnostics ``other`` of one output column run on its own (started with ``method``), as if it
        had run on this info after the columns before it: counts, timings and notes add up, a method the column set
        replaces this one's, ``converged`` holds for all, ``ipm_gap`` is the worst column's."""
        if other.method != method:
            self.method = other.method
        for name in ("newton_iterations", "ipm_iterations", "rows_added", "rows_released", "blocks_entered",
                     "blocks_dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.ipm_iterations > 0 or other.ipm_gap != math.inf:
            self.ipm_gap = other.ipm_gap if self.ipm_gap == math.inf else max(self.ipm_gap, other.ipm_gap)
        self.converged = self.converged and other.converged
        for key, sec in other.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + sec
        self.notes.extend(other.notes)
