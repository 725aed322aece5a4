"""Child process of test_threads.py: Ctrl-C torture. The main thread writes
beside 15 writer threads while a thread sends it SIGINT every 0.1 - 2 ms.
The SIGINT handler raises KeyboardInterrupt wherever a put has got to (as
Python's default handler does) but never in this script's own loop, which
counts the interrupts and goes on.

Prints one line of JSON (interrupts, acknowledged puts, errors, the puts
acknowledged but missing after a reopen) and exits 0, or 3 if writers were
left asleep."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time

import pykv

path, seconds = sys.argv[1], float(sys.argv[2])
PACKAGE = os.path.dirname(pykv.__file__) + os.sep


def raise_inside_pykv(signum: int, frame) -> None:
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith(PACKAGE):
            raise KeyboardInterrupt
        f = f.f_back


db = pykv.open(path)
stop = time.monotonic() + seconds
acked: dict[int, list[int]] = {t: [] for t in range(16)}
errors: list[str] = []


def writer(t: int) -> None:
    for k in range(10**9):
        if time.monotonic() >= stop:
            return
        try:
            db.put(f"t{t}/{k}", f"{t}:{k}")
        except pykv.errors.PykvError as exc:
            errors.append(repr(exc))
            return
        acked[t].append(k)


main = threading.get_ident()


def send_sigints() -> None:
    rng = random.Random(os.getpid())
    while time.monotonic() < stop:
        time.sleep(rng.uniform(0.0001, 0.002))
        signal.pthread_kill(main, signal.SIGINT)


signal.signal(signal.SIGINT, raise_inside_pykv)
threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(1, 16)]
threads.append(threading.Thread(target=send_sigints, daemon=True))
for thread in threads:
    thread.start()
interrupts = 0
for k in range(10**9):
    if time.monotonic() >= stop or errors:
        break
    try:
        db.put(f"t0/{k}", f"0:{k}")
        acked[0].append(k)
    except KeyboardInterrupt:
        interrupts += 1
    except pykv.errors.PykvError as exc:
        errors.append(repr(exc))
for thread in threads:
    thread.join(timeout=20)
signal.signal(signal.SIGINT, signal.SIG_IGN)
if any(thread.is_alive() for thread in threads):
    print(json.dumps({"asleep": sum(thread.is_alive() for thread in threads),
                      "errors": errors[:3]}), flush=True)
    os._exit(3)
db.close()
with pykv.open(path) as db:
    missing = [(t, k) for t, ks in acked.items() for k in ks
               if db.get_value(f"t{t}/{k}") != f"{t}:{k}".encode()]
print(json.dumps({"interrupts": interrupts, "acked": sum(map(len, acked.values())),
                  "errors": errors[:3], "missing": missing[:5]}), flush=True)
