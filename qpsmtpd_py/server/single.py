"""`qpsmtpd`: one SMTP session on stdin/stdout, for inetd, xinetd, tcpserver and
systemd socket activation with Accept=yes (or a pipe: `swaks --pipe qpsmtpd`).

Connection facts come from ucspi-tcp's environment (TCPREMOTEIP, TCPREMOTEHOST,
TCPREMOTEINFO, TCPLOCALIP, TCPLOCALPORT ...), else from the socket itself.
"""

import os
import sys

from .. import __version__
from ..channel import channel_for_fd
from .common import ServerArgumentParser, build_app, new_connection, run_session


def parse_args(argv):
    parser = ServerArgumentParser(
        prog="qpsmtpd",
        description="Run one SMTP session on standard input/output (inetd, xinetd, "
                    "tcpserver, systemd Accept=yes, or a pipe). Config is read from "
                    "$QPSMTPD_CONFIG, ./config, then $QMAIL/control.",
        epilog="Environment: TCPREMOTEIP TCPREMOTEPORT TCPREMOTEHOST TCPREMOTEINFO "
               "TCPLOCALIP TCPLOCALPORT describe the client (ucspi-tcp); RELAYCLIENT "
               "lets it relay (relay plugin); QPSMTPD_CONFIG names the config directory.")
    parser.add_argument("-c", "--config", metavar="DIR",
                        help="config directory (sets QPSMTPD_CONFIG; -c as in qpsmtpd, while "
                             "qpsmtpd-forkserver's -c is --limit-connections)")
    parser.add_argument("-H", "--no-rdns", action="store_true",
                        help="do not look up the client's host name (PTR) when "
                             "TCPREMOTEHOST is not set")
    parser.add_argument("--smtps", action="store_true",
                        help="the connection is implicit TLS (port 465 style): "
                             "handshake before the greeting (needs the tls plugin)")
    parser.add_argument("--version", action="version", version=f"qpsmtpd_py {__version__}")
    return parser.parse_args(argv)


def connection_from_environment(sock, smtps):
    env = os.environ
    remote = (env.get("TCPREMOTEIP"), env.get("TCPREMOTEPORT", "0"))
    local = (env.get("TCPLOCALIP"), env.get("TCPLOCALPORT", "0"))
    if sock is not None:
        try:
            peer = sock.getpeername()
            mine = sock.getsockname()
        except OSError:
            peer = mine = None
        if isinstance(peer, tuple):
            remote = (remote[0] or peer[0], env.get("TCPREMOTEPORT", peer[1]))
            local = (local[0] or mine[0], env.get("TCPLOCALPORT", mine[1]))
    # a pipe is a local process: treat it as loopback unless the environment says otherwise
    remote = (remote[0] or "127.0.0.1", remote[1] or 0)
    local = (local[0] or "127.0.0.1", local[1] or 0)
    info = env.get("TCPREMOTEINFO")
    host = env.get("TCPREMOTEHOST") or None
    remote_info = f"{info}@{host or '[' + remote[0] + ']'}" if info else None
    return new_connection(remote, local, smtps=smtps, remote_host=host, remote_info=remote_info)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = build_app(args.config)
    app.rdns = not args.no_rdns
    channel, sock = channel_for_fd(0, 1)
    connection = connection_from_environment(sock, args.smtps)
    run_session(app, channel, connection)
    return 0


if __name__ == "__main__":
    sys.exit(main())
