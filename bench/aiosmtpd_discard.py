#!/usr/bin/env python3
"""A peer for bench/run.py: aiosmtpd (one asyncio process) with a handler that
accepts every message and discards it. Runs under its own venv (pip install aiosmtpd).

    aiosmtpd_discard.py PORT
"""

import asyncio
import sys

from aiosmtpd.smtp import SMTP


class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK discarded"


async def serve(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Discard(), hostname="aiosmtpd.example.test",
                                                   data_size_limit=None),
                                      "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
