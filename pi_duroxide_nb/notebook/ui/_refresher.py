"""One daemon thread that calls a function every few seconds until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Refresher"]


class Refresher:
    """Calls ``tick()`` every ``interval`` seconds (or at once after ``poke()``) in a daemon thread.

    ``tick`` must not print: output from a background thread lands in whatever cell runs at
    that moment. Exceptions from ``tick`` go to ``on_error`` and the loop carries on.

    Example:
        refresher = Refresher(tick=dashboard.refresh, interval=1.0, on_error=show)
        refresher.start()
        refresher.stop()
    """

    def __init__(self, *, tick: Callable[[], None], interval: float, on_error: Callable[[BaseException], None]) -> None:
        self._tick = tick
        self._interval = interval
        self._on_error = on_error
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        """How many times ``tick`` ran (for tests and diagnostics)."""

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="pi_duroxide_nb-dashboard", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Refresh now instead of at the next interval; safe from any thread."""
        self._poke.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for a running tick to finish."""
        self._stop.set()
        self._poke.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self._interval)
            self._poke.clear()
            if self._stop.is_set():
                break
            try:
                self._tick()
            except BaseException as exc:  # noqa: BLE001 - the loop must survive a bad tick
                self._on_error(exc)
            self.ticks += 1
