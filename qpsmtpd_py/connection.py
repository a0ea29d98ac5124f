"""What we know about the client for the whole session (survives transactions)."""


class Connection:
    """Remote/local endpoints, HELO, relay permission, TLS and AUTH state, notes."""

    def __init__(self, remote_ip="", remote_port=0, local_ip="", local_port=0,
                 remote_host=None, remote_info=None, smtps=False):
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.local_ip = local_ip
        self.local_port = local_port
        self._remote_host_lookup = None       # the engine's PTR lookup in flight (a callable)
        self.remote_host = remote_host        # PTR name, or None
        self.remote_info = remote_info        # TCPREMOTEINFO@host style, or None
        self.relay_client = False
        self.hello = None                     # 'helo' or 'ehlo'
        self.hello_host = None
        self.tls = None                       # dict(version=, cipher=) once TLS is up
        self.smtps = smtps                    # listener wants TLS before the greeting
        self.auth_user = None
        self.auth_mechanism = None
        self.notes = {}
        self.id = None
        self.dns = None                       # this session's DNS answers (dns.SessionResolver)

    @property
    def remote_host(self):
        """The client's PTR name, or None. The engine starts that lookup before the
        connect hooks; the first read waits for it (at most dns_timeout), so the
        plugins' own connect-time lookups are in flight meanwhile."""
        lookup = self._remote_host_lookup
        if lookup is not None:
            self._remote_host_lookup = None
            self._remote_host = lookup()
        return self._remote_host

    @remote_host.setter
    def remote_host(self, value):
        self._remote_host_lookup = None
        self._remote_host = value

    def remote_host_from(self, lookup):
        """remote_host will be lookup() (a name or None), called on first read."""
        self._remote_host_lookup = lookup

    @property
    def remote_display(self):
        """remote_info, else the PTR name, else [ip]: what replies and Received show."""
        if self.remote_info:
            return self.remote_info
        if self.remote_host:
            return self.remote_host
        return f"[{self.remote_ip}]"

    def note(self, key, *value):
        """Perl-style notes(key[, value]) accessor."""
        if value:
            self.notes[key] = value[0]
        return self.notes.get(key)
