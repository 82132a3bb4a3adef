import signal
import time


def test_ignores_sigterm_and_sleeps():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(3600)
