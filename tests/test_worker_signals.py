"""The worker's stop flag and signal handlers on their own (moved from test_worker.py).

Signals during poll() and run_worker() are tested in test_worker.py.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tq_orchestrate.worker import StopFlag, handle_signals


def test_a_second_signal_raises_and_leaves_the_default_action_for_a_third() -> None:
    stop = StopFlag()
    before = signal.getsignal(signal.SIGUSR1)
    during: list[object] = []
    with pytest.raises(SystemExit) as exc, handle_signals(stop, (signal.SIGUSR1,)):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.is_set() and stop.reason == "SIGUSR1"
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
        finally:
            during.append(signal.getsignal(signal.SIGUSR1))
    assert exc.value.code == 128 + signal.SIGUSR1
    assert during == [signal.SIG_DFL]
    assert signal.getsignal(signal.SIGUSR1) is before


def test_signals_are_not_touched_outside_the_main_thread() -> None:
    stop = StopFlag()
    result: list[object] = []

    def body() -> None:
        with handle_signals(stop, (signal.SIGTERM,)):
            result.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert result == [before]
