"""t_scan - test plugin for the scanner client and the body API: scan the message
with clamd (INSTREAM) at data_post, then mark it the way content plugins do.

Arguments: ADDRESS [timeout S] [failure tempfail|accept] [max_bytes N]
A virus gets `552 Virus found: NAME`; a clean message gets the header
`X-Scanned: clean <data_size before>` and the body footer `-- scanned`. The
final data_size is logged as `size now N`.
"""

import struct

from qpsmtpd_py.api import (DECLINED, DENY, LOGINFO, Plugin, Scanner, ScannerError,
                            parse_pairs)


class TScan(Plugin):
    def register(self, address, *rest):
        args = parse_pairs(rest)
        self.clamd = Scanner(address, timeout=float(args.get("timeout", 10)),
                             max_bytes=args.get("max_bytes"),
                             failure=args.get("failure", "tempfail"), name="clamd")

    def hook_data_post(self, transaction):
        def instream(conn):
            conn.send(b"zINSTREAM\0")
            conn.send_message(transaction, frame=lambda chunk: struct.pack(">I", len(chunk)) + chunk)
            conn.send(b"\0\0\0\0")
            return conn.read_until(b"\0").rstrip(b"\0").decode()

        try:
            reply = self.clamd.exchange(instream)
        except ScannerError as exc:
            return self.clamd.failed(self, exc)
        if reply.endswith(" FOUND"):
            return DENY, "Virus found: " + reply[len("stream: "):-len(" FOUND")]
        before = transaction.data_size
        transaction.header.add("X-Scanned", f"clean {before}", prepend=True)
        transaction.body_append("-- scanned\n")
        self.log(LOGINFO, f"pass, size now {transaction.data_size}")
        return DECLINED
