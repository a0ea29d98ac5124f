"""The sender-authentication and GeoIP plugins in forked workers of qpsmtpd-prefork:
the resolver's threads, pyspf's DNS hook and the MaxMind readers are made per process
after fork (the master loaded the plugins)."""

from harness import mail_server_config, service_env
from serverproc import Server


def test_spf_dkim_dmarc_geoip_in_prefork_workers(make_config):
    geo = service_env("QPT_GEOIP_DIR")
    srv = mail_server_config(make_config, "ident/geoip db_dir " + geo, "sender_permitted_from reject 3",
                             "dkim reject 0", "dmarc")
    body = "From: a@example.test\nTo: u@example.test\nSubject: prefork {n}\n\nhello {n}"
    with Server("qpsmtpd-prefork", srv, "--children", "2", "--idle-children", "2") as server:
        for n in range(4):
            with server.client() as c:                     # 127.0.0.1: example.test's SPF passes
                assert c.send_message("a@example.test", ["u@example.test"], body.format(n=n))[0] == 250
        with server.client() as c:
            c.ehlo()
            code, text = c.cmd("MAIL FROM:<a@spam.test>")      # spam.test: v=spf1 -all
            assert code == 550 and "SPF - forgery: domain of spam.test does not designate 127.0.0.1" in text
        log = server.log
    messages = srv.messages()
    assert len(messages) == 4, log
    for msg in messages:
        head = msg.split(b"\n\n", 1)[0].decode()
        assert head.count("Authentication-Results:") == 1
        assert "spf=pass smtp.mailfrom=example.test; dkim=none; dmarc=pass" in head, head
        assert "X-GeoIP-Country: US" in head and "Received-SPF: Pass" in head
