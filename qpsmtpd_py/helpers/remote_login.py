"""Base class for auth plugins that check a password by logging in to another
server (IMAP, SMTP): the arguments `HOST [PORT] [tls MODE] [ca FILE|none]
[timeout S]` and the TLS context, written once."""

import ssl

from ..arguments import Choice, Int, Keyword, Number, Path, Positional, Text
from .auth_plugin import AuthPlugin


def login_arguments(modes, default_port, default_timeout):
    """The declared arguments of a remote-login plugin with these TLS modes."""
    return (
        Positional("host", Text(), None, "the server to log in to", required=True),
        Positional("port", Int(min=1, max=65535), default_port, "its port"),
        Keyword("tls", Choice(*modes), "auto",
                "how to use TLS: auto = STARTTLS when the server offers it (on the protocol's "
                "implicit-TLS port the default is implicit TLS)"),
        Keyword("ca", Path(), None, "CA file to verify the server with (not given: the "
                "system's CAs; `ca none`: no verification)", metavar="FILE"),
        Keyword("timeout", Number(min=0.1, unit="seconds"), float(default_timeout),
                "for connecting and for each answer"),
    )


class RemoteLoginPlugin(AuthPlugin):
    """Subclasses set: implicit_tls_port, implicit_mode, and
    arguments = login_arguments(...)."""

    implicit_tls_port = 0
    implicit_mode = ""

    def register(self, *args):
        self.host = self.args["host"]
        self.port = self.args["port"]
        self.mode = self.args["tls"]
        if "tls" not in self.args.given and self.port == self.implicit_tls_port:
            self.mode = self.implicit_mode
        self.ca = self.args["ca"]
        self.timeout = self.args["timeout"]

    @property
    def where(self):
        return f"{self.host}:{self.port}"

    def ssl_context(self):
        """Verifying context (system CAs or `ca FILE`); `ca none` skips verification."""
        if self.ca and self.ca.lower() == "none":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.ca)
