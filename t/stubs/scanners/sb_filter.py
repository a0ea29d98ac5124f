#!/usr/bin/python3
"""Stand-in for SpamBayes' sb_filter.py in its default filter mode: reads a message
on stdin and writes it to stdout with an X-Spambayes-Classification header field on
top: `spam; 1.00` for spammy text (GTUBE, viagra), `ham; 0.00` otherwise,
`unsure; 0.50` for text containing "maybe". Options other than -f are refused (exit 2)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _detect  # noqa: E402

_detect.record()
if sys.argv[1:] not in ([], ["-f"]):
    print("sb_filter.py: unknown option", file=sys.stderr)
    sys.exit(2)
message = sys.stdin.buffer.read()
if b"GTUBE" in message or b"viagra" in message.lower():
    verdict = "spam; 1.00"
elif b"maybe" in message:
    verdict = "unsure; 0.50"
else:
    verdict = "ham; 0.00"
sys.stdout.buffer.write(f"X-Spambayes-Classification: {verdict}\n".encode() + message)
