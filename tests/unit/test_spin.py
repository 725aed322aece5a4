"""``pykv_spin_until`` (csrc/spin.c): the busy-wait hand-off the embedded
write path uses between its leader and its applier thread."""

from __future__ import annotations

import threading
import time

from pykv._binding import ffi, lib


def test_returns_at_once_when_the_words_are_already_there():
    words = ffi.new("int64_t[2]", [5, 7])
    assert lib.pykv_spin_until(ffi.NULL, 0, words, 5, words + 1, 7, 10**9) == 1
    assert lib.pykv_spin_until(ffi.NULL, 0, words, 4, ffi.NULL, 0, 10**9) == 1


def test_gives_up_after_its_budget():
    words = ffi.new("int64_t[2]", [1, 1])
    start = time.monotonic()
    assert lib.pykv_spin_until(ffi.NULL, 0, words, 2, ffi.NULL, 0, 20_000_000) == 0
    assert 0.015 <= time.monotonic() - start < 5
    # Both words must be reached, not one of them.
    assert lib.pykv_spin_until(ffi.NULL, 0, words, 1, words + 1, 2, 1_000_000) == 0


def test_announces_first_and_sees_a_store_from_another_thread():
    words = ffi.new("int64_t[3]")
    seen = {}

    def other():
        # Waits (spinning) for the main thread's announcement, then answers.
        seen["announced"] = lib.pykv_spin_until(ffi.NULL, 0, words + 2, 9, ffi.NULL, 0,
                                                5 * 10**9)
        words[0] = 3

    thread = threading.Thread(target=other)
    thread.start()
    # The GIL is released while spinning, so the other thread can run.
    assert lib.pykv_spin_until(words + 2, 9, words, 3, ffi.NULL, 0, 5 * 10**9) == 1
    thread.join()
    assert seen == {"announced": 1}
