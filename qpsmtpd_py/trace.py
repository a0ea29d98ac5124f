"""Trace header fields the server adds to each message: Received (RFC 5321 4.4)
and Authentication-Results (RFC 8601)."""

import time

from . import constants as C


def protocol_word(connection):
    """SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848)."""
    if connection.hello != "ehlo":
        return "SMTP"
    return "ESMTP" + ("S" if connection.tls else "") + ("A" if connection.auth_user else "")


def add_received(session, txn):
    """Prepend Received; a received_line hook's lines replace ours (qpsmtpd bug #309)."""
    conn = session.connection
    word = protocol_word(conn)
    tls = ""
    if conn.tls:
        tls = f"({conn.tls.get('version', 'TLS')} {conn.tls.get('cipher', '')} encrypted) "
    code, lines, _ = session.run_hooks("received_line", word, "", tls)
    if code == C.OK and lines:
        value = "\n".join(lines)
    else:
        date = time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime())
        value = (f"from {conn.remote_display} (HELO {conn.hello_host}) ({conn.remote_ip})\n"
                 f" by {session.me} (qpsmtpd_py/{session.app.version}) with {tls}{word}; {date}")
    txn.header.add("Received", value, prepend=True)


def add_authentication_results(session, txn):
    """Prepend Authentication-Results with AUTH and this message's plugin results
    only (qpsmtpd bug #320 repeated earlier messages'); `me-auth-results none` omits it."""
    server_id = session.config("me-auth-results") or session.me
    if server_id.lower() == "none":
        return
    conn = session.connection
    if conn.auth_user:
        parts = [f"auth=pass ({conn.auth_mechanism.lower()})"]
        if session.app.config.get_bool("auth_results_user"):
            parts[0] += f" smtp.auth={conn.auth_user}"
    else:
        parts = ["auth=none"]
    parts += list(conn.notes.get("authentication_results") or [])
    parts += list(txn.notes.get("authentication_results") or [])
    rename_inbound_results(txn.header)
    txn.header.add("Authentication-Results", f"{server_id}; " + "; ".join(parts), prepend=True)


def rename_inbound_results(header):
    """Authentication-Results the message arrived with (anyone can write one) become
    Original-Authentication-Results, so the message carries one: ours (as qpsmtpd;
    RFC 8601 5). Left alone when a DKIM signature covers them (renaming would break it)."""
    if not header.get_all("Authentication-Results"):
        return
    for signature in header.get_all("DKIM-Signature"):
        tags = dict(part.strip().partition("=")[::2] for part in str(signature).split(";"))
        covered = [h.strip().lower() for h in "".join(tags.get("h", "").split()).split(":")]
        if "authentication-results" in covered:
            return
    header.rename("Authentication-Results", "Original-Authentication-Results")
