"""How long a client must wait after failed logins (pure: no clock, no IO).

The first ``free`` failures cost nothing (typos happen); from then on each failure
doubles the wait, from ``base_seconds`` up to ``cap_seconds``. The wait runs from the
newest failure, and attempts refused while waiting are not failures: a client that
waits out its lockout and then types the right password gets in.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2**62 seconds is beyond any cap; stops the exponent from growing without bound.
_MAX_DOUBLINGS = 62


@dataclass(frozen=True, slots=True)
class Backoff:
    free: int
    base_seconds: float
    cap_seconds: float

    def __post_init__(self) -> None:
        if self.free < 1 or self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("need free >= 1 and 0 < base_seconds <= cap_seconds")

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (0 while they are free)."""
        if failures < self.free:
            return 0.0
        doublings = min(failures - self.free, _MAX_DOUBLINGS)
        return min(self.cap_seconds, self.base_seconds * float(2**doublings))

    def remaining(self, failures: int, last_failure: float, now: float) -> float:
        """Seconds still to wait at ``now`` (0: may try), the newest failure at
        ``last_failure`` (same clock)."""
        return max(0.0, last_failure + self.delay(failures) - now)

    def starts_lockout(self, failures: int) -> bool:
        """Whether this failure is the one that first makes the client wait."""
        return failures == self.free
