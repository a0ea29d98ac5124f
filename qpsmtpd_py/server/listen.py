"""Where the listening sockets come from: `--listen-address`/`--port` parsed and
bound, or inherited from systemd socket activation (LISTEN_FDS).

Address forms, as qpsmtpd takes them: `0.0.0.0`, `127.0.0.1:2525`, `[::1]`,
`[::]:25`, `localhost:25`, and a bare IPv6 address such as `::1` (no port then).
A port given with the address overrides `--port`; an address without one is
bound on every `--port`. Listeners on an SMTPS port (465 unless told otherwise)
do implicit TLS: their connections are made with smtps=True.
"""

import errno
import os
import socket
import stat

SMTPS_PORT = 465
SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """A listening socket could not be made; the text says which and why."""


class Listener:
    """One listening socket and whether its clients speak TLS from the start."""

    def __init__(self, sock, smtps=False):
        self.sock = sock
        self.smtps = smtps
        host, port = sock.getsockname()[:2]
        self.port = port
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def fileno(self):
        return self.sock.fileno()

    def accept(self, blocking=True):
        """(client socket, peer address), or (None, None) when another process
        took the connection first (the listener is non-blocking). The client
        socket is blocking unless `blocking` is false (the front's event loop)."""
        try:
            client, peer = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None, None
        except OSError as exc:
            # the client gave up before we accepted, or we are out of descriptors
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE,
                             errno.ENOBUFS, errno.ENOMEM):
                return None, None
            raise
        client.setblocking(blocking)
        return client, peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __repr__(self):
        return f"<Listener {self.name}{' smtps' if self.smtps else ''}>"


def parse_address(text, default_port=None):
    """'[::1]:25' -> ('::1', 25); '127.0.0.1' -> ('127.0.0.1', default_port)."""
    text = text.strip()
    port = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"listen address '{text}': missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"listen address '{text}': junk after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text                      # a name, an IPv4 address, or a bare IPv6 address
    if not host:
        raise ValueError(f"listen address '{text}': no host")
    if port is None or port == "":
        if default_port is None:
            raise ValueError(f"listen address '{text}': no port")
        port = default_port
    return host, parse_port(port)


def parse_port(value):
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"'{value}' is not a TCP port (1-65535)")
    return int(text)


def default_address():
    """`::` (dual stack, IPv4 clients too) when the machine has IPv6, else 0.0.0.0."""
    if not socket.has_ipv6:
        return "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return "0.0.0.0"
    return "::"


def listen_specs(addresses, ports, extra_ports=()):
    """Every (host, port) to bind: each address on its own port or on every port,
    and every address also on each of `extra_ports` (--smtps-port)."""
    specs = []
    for address in addresses or [default_address()]:
        has_port = (address.startswith("[") and "]:" in address) or address.count(":") == 1
        if has_port:
            candidates = [parse_address(address)]
        else:
            candidates = [parse_address(address, port) for port in ports]
        host = candidates[0][0]
        candidates += [(host, port) for port in extra_ports]
        for spec in candidates:
            if spec not in specs:
                specs.append(spec)
    return specs


def bind(host, port, dual_stack=True, backlog=None):
    """A non-blocking, close-on-exec listening TCP socket on host:port."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # [::] takes IPv4 clients too (as ::ffff:a.b.c.d), unless 0.0.0.0 is bound
            # on the same port; [::ffff:a.b.c.d] is an IPv4 address by definition
            mapped = address[0].lower().startswith("::ffff:") and "." in address[0]
            dual = mapped or (address[0] == "::" and dual_stack)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
        sock.bind(address)
        sock.listen(backlog or socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"cannot listen on {shown}: {exc.strerror or exc}")
    sock.setblocking(False)
    return sock


def bind_all(specs, smtps_ports=(SMTPS_PORT,)):
    """Listeners for every (host, port); on error the ones made are closed again."""
    v4_wildcard_ports = {port for host, port in specs if host == "0.0.0.0"}
    listeners = []
    try:
        for host, port in specs:
            sock = bind(host, port, dual_stack=port not in v4_wildcard_ports)
            listeners.append(Listener(sock, smtps=port in smtps_ports))
    except ListenError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def inherited_listeners(smtps_ports=(SMTPS_PORT,), environ=None):
    """Sockets passed by systemd (LISTEN_FDS/LISTEN_PID), or None when there are none.

    A socket named `smtps` in LISTEN_FDNAMES (FileDescriptorName=smtps) or bound to
    an SMTPS port does implicit TLS. The variables are removed so that nothing we
    start later thinks the sockets are meant for it.
    """
    environ = os.environ if environ is None else environ
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if not count:
        return None
    names = (environ.get("LISTEN_FDNAMES") or "").split(":")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    if not (pid and pid.isdigit() and int(pid) == os.getpid()):
        return None
    if not count.isdigit() or int(count) < 1:
        raise ListenError(f"LISTEN_FDS={count!r} is not a positive number")
    listeners = []
    for index in range(int(count)):
        fd = SD_LISTEN_FDS_START + index
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            raise ListenError(f"LISTEN_FDS: descriptor {fd} is not open")
        if not stat.S_ISSOCK(mode):
            raise ListenError(f"LISTEN_FDS: descriptor {fd} is not a socket")
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ListenError(f"LISTEN_FDS: descriptor {fd} is not a listening stream socket "
                              "(Accept=yes units run `qpsmtpd`, not this server)")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ListenError(f"LISTEN_FDS: descriptor {fd} is not a TCP socket")
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        name = names[index] if index < len(names) else ""
        port = sock.getsockname()[1]
        listeners.append(Listener(sock, smtps=name == "smtps" or port in smtps_ports))
    return listeners
