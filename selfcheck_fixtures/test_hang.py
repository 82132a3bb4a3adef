import time


def test_sleeps_forever():
    time.sleep(3600)
