import ctypes


def test_segfaults():
    ctypes.string_at(0)
