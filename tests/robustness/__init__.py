"""History checking of `pykv serve` under crashes (etcd robustness / Jepsen style).

Concurrent clients record every operation (invoke, then ok / fail /
indeterminate), a nemesis SIGKILLs and restarts the server, and validators
check the history against a model of etcd's KV: revisions
(`validate.py`), per-key linearizability (`linearizability.py` with the model
in `model.py`) and the final state. A watch kept across restarts
(`watcher.py`) gives the write log. With `Config(compaction=True,
leases=True)` the clients also compact, read at past revisions and use
leases (`traffic_mvcc.py`), judged by `validate_mvcc.py`; the watcher's own
responses are judged by `validate_watch.py`. `python -m tests.robustness`
runs more seeds than CI does.
"""
