"""Base class for auth plugins that check a password by logging in to another
server (IMAP, SMTP): argument parsing `HOST [PORT] [tls MODE] [ca FILE|none]
[timeout S]` and the TLS context, written once."""

import ssl

from .plugin import Plugin, parse_pairs


class RemoteLoginPlugin(Plugin):
    """Subclasses set: default_port, implicit_tls_port, implicit_mode, modes,
    default_timeout."""

    default_port = 0
    implicit_tls_port = 0
    implicit_mode = ""
    modes = ()
    default_timeout = 10

    def register(self, *args):
        name = self.plugin_name
        if not args:
            raise ValueError(f"{name} needs the server: {name} HOST [PORT]")
        self.host = args[0]
        rest = list(args[1:])
        self.port = int(rest.pop(0)) if rest and rest[0].isdigit() else self.default_port
        self.args = parse_pairs(rest)
        if rest and not self.args:
            raise ValueError(f"{name}: cannot parse arguments {' '.join(rest)}")
        default_mode = self.implicit_mode if self.port == self.implicit_tls_port else "auto"
        self.mode = self.args.get("tls", default_mode).lower()
        if self.mode not in self.modes:
            raise ValueError(f"{name}: tls must be one of {', '.join(self.modes)}")
        self.ca = self.args.get("ca")
        self.timeout = float(self.args.get("timeout", self.default_timeout))

    def ssl_context(self):
        """Verifying context (system CAs or `ca FILE`); `ca none` skips verification."""
        if self.ca and self.ca.lower() == "none":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.ca)
