"""The circuit breaker of the clients: one circuit per endpoint, pure Python (no I/O, no grpcio;
the caller passes the time, read from a monotonic clock).

A circuit is *closed* while its endpoint answers. After ``failures`` consecutive failed
attempts that say the endpoint is gone (the clients count ``UNAVAILABLE`` and
``DEADLINE_EXCEEDED``; any answer from the server, even an error, counts as success) it
*opens*: calls to that endpoint fail at once, without touching the network, for a cool-off
drawn between half and all of ``cool_off`` seconds. When the cool-off ends, one caller probes
(*half-open*) while the others still fail at once: the clients ask the endpoint's gRPC health
service first, with a deadline of at most ``probe_timeout``, so that probing a hung endpoint
costs that caller ``probe_timeout``, not its whole deadline. An answer closes the circuit (and
the call goes on), a failure opens it again for twice as long (up to ``max_cool_off``).
Opening and closing are logged on the ``mintcache.circuit`` logger.

Every method holds the circuit's lock for a few instructions only, so one circuit can be
shared by threads and event loops (the Django backend shares one per endpoint between its
sync and asyncio clients).
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

__all__ = ["Breaker", "Circuit", "Permit"]

log = logging.getLogger("mintcache.circuit")

_CLOSED = "closed"
_OPEN = "open"
_HALF_OPEN = "half-open"


class Breaker:
    """The circuit-breaker settings of a client, and the circuits of the endpoints it has seen.

    ``failures``: consecutive failed attempts (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``) that
    open an endpoint's circuit (default 3). ``cool_off``: seconds a circuit stays open the
    first time (default 1; each wait is jittered down to between half and all of it).
    ``max_cool_off``: the longest wait, reached by doubling after each failed probe
    (default 30). ``probe_timeout``: the longest a probe waits for the endpoint's health
    answer (default 1).

    Clients given the same :class:`Breaker` share the state of each endpoint (the Django
    backend gives its sync and asyncio clients one); a client made without one gets its own.
    """

    __slots__ = ("failures", "cool_off", "max_cool_off", "probe_timeout", "_circuits", "_lock")

    def __init__(
        self,
        failures: int = 3,
        cool_off: float = 1.0,
        max_cool_off: float = 30.0,
        probe_timeout: float = 1.0,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError("Breaker: failures must be a whole number >= 1")
        for name, value in (
            ("cool_off", cool_off),
            ("max_cool_off", max_cool_off),
            ("probe_timeout", probe_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Breaker: {name} must be seconds > 0")
        if max_cool_off < cool_off:
            raise ValueError("Breaker: max_cool_off must be at least cool_off")
        self.failures = failures
        self.cool_off = float(cool_off)
        self.max_cool_off = float(max_cool_off)
        self.probe_timeout = float(probe_timeout)
        self._circuits: dict[str, Circuit] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Breaker(failures={self.failures}, cool_off={self.cool_off}, "
            f"max_cool_off={self.max_cool_off}, probe_timeout={self.probe_timeout})"
        )

    def circuit(self, endpoint: str) -> Circuit:
        """The circuit of ``endpoint`` (created closed on first use)."""
        with self._lock:
            circuit = self._circuits.get(endpoint)
            if circuit is None:
                circuit = self._circuits[endpoint] = Circuit(endpoint, self)
            return circuit

    def circuits(self) -> list[Circuit]:
        """Every circuit made so far."""
        with self._lock:
            return list(self._circuits.values())


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one attempt; ``probe`` when it is the one attempt of a half-open circuit.
    Hand it back to :meth:`Circuit.record` (or :meth:`Circuit.abandon`)."""

    circuit: Circuit
    probe: bool


class Circuit:
    """The state of one endpoint. See the module documentation."""

    def __init__(self, endpoint: str, breaker: Breaker) -> None:
        self.endpoint = endpoint
        self._breaker = breaker
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._failures = 0
        self._opens = 0  # consecutive openings: the cool-off doubles with each
        self._open_until = 0.0
        self._opened_at = 0.0
        self._probe_since: float | None = None
        self._last_error = ""
        # The permit of every attempt while the circuit is closed (permits are immutable).
        self._closed_permit = Permit(self, probe=False)

    def __repr__(self) -> str:
        return f"Circuit({self.endpoint!r}, {self._state})"

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return self._state

    @property
    def probe_timeout(self) -> float:
        """The longest a probe waits for an answer."""
        return self._breaker.probe_timeout

    @property
    def last_error(self) -> str:
        """What the last counted failure was (``CODE: details``), or ``""``."""
        return self._last_error

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe may go (0 when a call may go now)."""
        with self._lock:
            if self._state == _OPEN:
                return max(self._open_until - now, 0.0)
            return 0.0

    def allow(self, now: float) -> Permit | None:
        """A permit for one attempt, or ``None``: the circuit is open (or half-open with its
        probe in flight) and the call must fail without being sent."""
        if self._state == _CLOSED:  # the common case, read without the lock
            return self._closed_permit
        with self._lock:
            if self._state == _CLOSED:
                return self._closed_permit
            if self._state == _OPEN:
                if now < self._open_until:
                    return None
                self._state = _HALF_OPEN
                self._probe_since = now
                return Permit(self, probe=True)
            # Half-open: one probe at a time. A probe whose caller vanished without an answer
            # (a thread killed mid-call) must not keep the circuit shut: after the longest
            # cool-off another caller may probe.
            since = self._probe_since
            if since is not None and now - since < self._breaker.max_cool_off:
                return None
            self._probe_since = now
            return Permit(self, probe=True)

    def record(self, permit: Permit, failed: bool, now: float, error: str = "") -> None:
        """The attempt made under ``permit`` ended: ``failed`` when it was a counted failure
        (``error`` says which, for the log; never a value or a token)."""
        if not failed and self._state == _CLOSED and not self._failures:
            return  # a success on a healthy circuit changes nothing
        opened_for = None
        closed_after = None
        reopened = False
        with self._lock:
            if not failed:
                if self._state != _CLOSED:
                    closed_after = now - self._opened_at
                self._state = _CLOSED
                self._failures = 0
                self._opens = 0
                self._probe_since = None
            else:
                self._last_error = error
                if permit.probe or self._state == _HALF_OPEN:
                    reopened = True
                    opened_for = self._open(now)
                elif self._state == _CLOSED:
                    self._failures += 1
                    if self._failures >= self._breaker.failures:
                        opened_for = self._open(now)
                # Open already (another caller's attempt tripped it meanwhile): nothing new.
            failures = self._failures
        if opened_for is not None and reopened:
            log.warning(
                "mintcache: circuit of %s stays open: the probe failed (%s); next probe in %.2f s",
                self.endpoint,
                error or "unknown",
                opened_for,
            )
        elif opened_for is not None:
            log.warning(
                "mintcache: circuit of %s open after %d consecutive failure(s) (last: %s): "
                "calls to it fail at once; next probe in %.2f s",
                self.endpoint,
                failures,
                error or "unknown",
                opened_for,
            )
        elif closed_after is not None:
            log.warning(
                "mintcache: circuit of %s closed: it answered again after %.2f s",
                self.endpoint,
                closed_after,
            )

    def abandon(self, permit: Permit) -> None:
        """The attempt made under ``permit`` ended without telling anything about the endpoint
        (cancelled, or failed before it was sent): a probe slot is freed, nothing else."""
        if permit.probe:
            with self._lock:
                if self._state == _HALF_OPEN:
                    self._state = _OPEN
                    self._open_until = 0.0  # the next caller probes at once
                    self._probe_since = None

    def _open(self, now: float) -> float:
        # Called with the lock held.
        breaker = self._breaker
        if self._state == _CLOSED:
            self._opened_at = now
        base = min(breaker.cool_off * (2 ** min(self._opens, 30)), breaker.max_cool_off)
        wait = base * (0.5 + random.random() / 2)
        self._opens += 1
        self._state = _OPEN
        self._open_until = now + wait
        self._probe_since = None
        return wait
