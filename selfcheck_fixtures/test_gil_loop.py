def test_c_loop_holding_the_gil():
    # One C call that never releases the GIL: no in-process timeout can stop it.
    sum(range(10**12))
