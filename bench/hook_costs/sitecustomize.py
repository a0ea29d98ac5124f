"""Per-plugin hook CPU inside the servers of a benchmark (bench/shared_state.py
--hook-costs): with QPB_HOOK_COSTS=DIR in the environment and this directory on
PYTHONPATH, every hook call is timed (thread CPU time) and each process writes its
totals to DIR/<pid>.json now and then. bench/hook_costs/report.py adds them up per
message. The timing adds about a microsecond per call; compare plugins, not servers.
QPB_TIME_FUNCS="module:Class.method module:function ..." also times those functions
(reported as "=module:Class.method"; nested in the hooks' times, not added to them)."""

import collections
import json
import os
import time

_DIR = os.environ.get("QPB_HOOK_COSTS")
if _DIR:
    from qpsmtpd_py import hooks

    _cpu = collections.Counter()
    _calls = collections.Counter()
    _seen = [0]
    _add = hooks.HookRunner.add

    def _dump():
        with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as fh:
            json.dump({"cpu_ns": _cpu, "calls": _calls}, fh)

    def _timed_add(self, hook, plugin, func, unshift=False):
        name = f"{plugin.plugin_name}:{hook}"

        def timed(*args, _func=func, _name=name):
            start = time.thread_time_ns()
            try:
                return _func(*args)
            finally:
                _cpu[_name] += time.thread_time_ns() - start
                _calls[_name] += 1
                _seen[0] += 1
                if _seen[0] % 200 == 0:
                    _dump()
        return _add(self, hook, plugin, timed, unshift)

    hooks.HookRunner.add = _timed_add

    def _wrap(name, func):
        label = "=" + name

        def timed(*args, **kwargs):
            start = time.thread_time_ns()
            try:
                return func(*args, **kwargs)
            finally:
                _cpu[label] += time.thread_time_ns() - start
                _calls[label] += 1
        return timed

    import importlib
    for _spec in os.environ.get("QPB_TIME_FUNCS", "").split():
        _module, _, _path = _spec.partition(":")
        _owner = importlib.import_module(_module)
        *_parents, _attr = _path.split(".")
        for _part in _parents:
            _owner = getattr(_owner, _part)
        setattr(_owner, _attr, _wrap(_spec, getattr(_owner, _attr)))
    os.register_at_fork(after_in_child=lambda: (_cpu.clear(), _calls.clear()))
