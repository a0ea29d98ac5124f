"""tls - STARTTLS (RFC 3207) and implicit TLS on SMTPS listeners (port 465).

Arguments (all optional, as qpsmtpd):

  tls [cert_path [key_path [ca_path [dhparam_path]]]]

Defaults: ssl/qpsmtpd-server.crt, ssl/qpsmtpd-server.key, ssl/qpsmtpd-ca.crt and
ssl/qpsmtpd-dhparam.pem, where ssl/ is ./ssl if it exists, else the ssl/ directory
of the config directory ($QPSMTPD_CONFIG/ssl, ./config/ssl). `qpsmtpd-tls-cert`
makes a CA and a server certificate there. When the default certificate or key is
missing the plugin logs an error and STARTTLS is not offered; a file named on the
plugin line that is missing or unusable stops the server at start-up. The CA and
dhparam files are used when they exist. Certificates are read again on SIGHUP.

Config files:
  tls_ciphers     OpenSSL cipher list for TLS 1.2 (default: Python's modern list,
                  forward secret AEAD ciphers; qpsmtpd used HIGH)
  tls_protocols   e.g. 'TLSv1_2:TLSv1_3' or qpsmtpd's 'SSLv23:!SSLv2:!SSLv3'.
                  TLS 1.2 is the minimum unless TLSv1/TLSv1_1 are named explicitly.
  tls_before_auth 1: do not offer AUTH while STARTTLS is still offered (only
                  matters with auth_allow_plaintext 1: AUTH needs TLS by default)

Behaviour:
  EHLO lists STARTTLS while the connection is not encrypted (never after HELO).
  STARTTLS       -> 220 Go ahead with TLS, then the handshake. Anything the client
                    sent after STARTTLS and before the handshake is discarded
                    (CVE-2011-0411). The transaction is reset and the client must
                    EHLO again; STARTTLS is then no longer offered.
  STARTTLS x     -> 500 Syntax error (no parameters allowed)
  before EHLO    -> 500 Unrecognized command
  after AUTH     -> 503 STARTTLS not allowed after AUTH
  during a mail transaction (after MAIL) -> 503 5.5.1 Error: MAIL transaction in
                    progress (Postfix's answer; qpsmtpd started TLS mid-transaction).
                    RSET ends the transaction and STARTTLS works again.
  failure        -> 500 TLS Negotiation Failed; later HELO/EHLO/MAIL/RCPT/DATA/AUTH
                    get 550 Command refused due to lack of security.
  SMTPS listeners (qpsmtpd --smtps, forkserver/prefork --smtps-port) handshake
  before the greeting; a failed handshake closes the connection (logged). As in
  qpsmtpd, a connection to local port 465 gets implicit TLS too (load tls first
  among the connect plugins); failure: 550 Cannot establish SSL session + close.

The connection note `tls_enabled` is set once TLS is up; Received says
"with (TLSv1.3 TLS_AES_256_GCM_SHA384 encrypted) ESMTPS".

Example config/plugins line (first among the connect plugins):
  tls ssl/qpsmtpd-server.crt ssl/qpsmtpd-server.key ssl/qpsmtpd-ca.crt
"""

import os
import stat

from qpsmtpd_py.api import (DECLINED, DEFAULT_TLS_FILES, DENY, DENY_DISCONNECT, DONE, LOGERROR,
                            LOGINFO, LOGNOTICE, LOGWARN, Path, Plugin, Positional, TLSFailed,
                            build_tls_context, default_ssl_dir)

SMTPS_PORT = 465
NAMES = ("cert", "key", "ca", "dhparam")


class TLS(Plugin):
    arguments = tuple(Positional(name, Path(), None, f"the {what} (default ssl/{DEFAULT_TLS_FILES[name]})")
                      for name, what in zip(NAMES, ("server certificate", "private key",
                                                    "CA certificate(s)", "DH parameters")))

    def register(self, *args):
        ssl_dir = default_ssl_dir(self.app.config.dirs)
        paths = {name: self.args[name] or os.path.join(ssl_dir, DEFAULT_TLS_FILES[name])
                 for name in NAMES}
        for name in NAMES:
            if name in self.args.given and not os.path.isfile(paths[name]):
                raise ValueError(f"{name} file {paths[name]} not found")
        if not (os.path.isfile(paths["cert"]) and os.path.isfile(paths["key"])):
            self.log(LOGERROR, f"Cannot locate cert/key ({paths['cert']}, {paths['key']})! "
                               "Run qpsmtpd-tls-cert to generate; STARTTLS disabled")
            return
        _warn_if_readable(self, paths["key"])
        context = build_tls_context(
            paths["cert"], paths["key"],
            ca=paths["ca"] if os.path.isfile(paths["ca"]) else None,
            dhparam=paths["dhparam"] if os.path.isfile(paths["dhparam"]) else None,
            ciphers=self.config("tls_ciphers"),
            protocols=self.config("tls_protocols"))
        self.provide_tls(context, description=paths["cert"])
        self.log(LOGINFO, f"TLS ready with {paths['cert']}")

    def hook_connect(self, transaction):
        """qpsmtpd's port-465 rule: implicit TLS when the listener did not already do it
        (tcpserver or inetd running `qpsmtpd` on port 465 without --smtps)."""
        conn = self.connection
        if conn.local_port != SMTPS_PORT or conn.tls:
            return DECLINED
        if not self.tls_available():
            return DENY_DISCONNECT, "Cannot establish SSL session"
        try:
            self.start_tls(implicit=True)
        except TLSFailed as exc:
            self.log(LOGWARN, f"fail, TLS handshake on port {SMTPS_PORT} failed: {exc}")
            return DENY_DISCONNECT, "Cannot establish SSL session"
        return DECLINED

    def hook_ehlo(self, transaction, host, *rest):
        if self.tls_available():
            self.add_capability("STARTTLS")
        return DECLINED

    def hook_unrecognized_command(self, transaction, verb, rest):
        if verb != "starttls":
            return DECLINED
        conn = self.connection
        if not self.tls_available() or conn.hello != "ehlo":
            return DECLINED                       # -> 500 Unrecognized command
        if rest:
            return DENY, "Syntax error (no parameters allowed)"
        if conn.auth_user:
            self.qp.respond(503, "STARTTLS not allowed after AUTH")
            return DONE
        if transaction is not None and transaction.sender is not None:
            # Postfix's answer; RSET ends the transaction and STARTTLS works again
            self.qp.respond(503, "5.5.1 Error: MAIL transaction in progress")
            return DONE
        try:
            self.start_tls()
        except TLSFailed as exc:
            self.log(LOGWARN, f"fail, TLS negotiation failed: {exc}")
            return DENY, "TLS Negotiation Failed"
        self.log(LOGNOTICE, "pass, STARTTLS: " + " ".join(
            str(conn.tls.get(k, "")) for k in ("version", "cipher")))
        return DONE


def _warn_if_readable(plugin, path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IRGRP:
        plugin.log(LOGWARN, f"{path} is readable by other users; chmod 600 it")
