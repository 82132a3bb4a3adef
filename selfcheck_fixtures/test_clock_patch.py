import time


def test_leaks_a_patched_clock():
    # Never restored: every later test in this process sees a frozen
    # time.monotonic (which would hide a hang) and a time.time that races an
    # hour ahead per real second (which would make a short test look hung).
    real_time = time.time
    start = real_time()
    time.monotonic = lambda: 1000.0
    time.time = lambda: start + (real_time() - start) * 3600


def test_short_after_the_patch():
    time.sleep(0.2)


def test_hangs_after_the_patch():
    time.sleep(3600)
