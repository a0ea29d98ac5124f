#!/usr/bin/env python3
"""Add up bench/hook_costs/sitecustomize.py's files: CPU microseconds per message of
each plugin's hook, per message delivered (the calls of the queue hook)."""

import collections
import glob
import json
import os
import sys


def report(directory, queue_hook="queue/discard:queue"):
    cpu, calls = collections.Counter(), collections.Counter()
    for path in glob.glob(os.path.join(directory, "*.json")):
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue                       # a file being rewritten
        cpu.update(data["cpu_ns"])
        calls.update(data["calls"])
    messages = calls.get(queue_hook) or 1
    lines = [f"{'us/msg':>8} {'calls/msg':>9}  plugin:hook   ({messages} messages)"]
    for name, ns in sorted(cpu.items(), key=lambda item: -item[1]):
        lines.append(f"{ns / 1000 / messages:8.2f} {calls[name] / messages:9.2f}  {name}")
    hooks = sum(ns for name, ns in cpu.items() if not name.startswith("="))
    lines.append(f"{hooks / 1000 / messages:8.2f} {'':9}  all hooks")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sys.argv[1]))
