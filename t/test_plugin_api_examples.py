"""The worked examples of docs/plugin-api.md's API v1 sections run as written: each
```python block that defines a plugin class is saved as a plugin file and driven
through an in-process session (DNS from the test nsd, clamd, the store, an HTTP
stand-in for the auth example), so the manual cannot drift from the engine."""

import base64
import http.server
import os
import re
import threading

import pytest

from harness import ConfigDir, service_env
from inproc import InProcessServer, message_wire

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(HERE), "docs", "plugin-api.md")
REAL = os.path.join(os.path.dirname(HERE), "plugins")
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EXAMPLES = {"Listed": "listed", "TooEager": "tooeager", "ClamdSmall": "virus/clamd_small",
            "Footer": "footer", "ExampleExtension": "example_ext",
            "AuthExampleHttp": "auth/auth_example_http", "Strict821": "strict821"}


@pytest.fixture(scope="module")
def doc_plugins(tmp_path_factory):
    """The doc's example plugins as files in a plugin dir."""
    directory = tmp_path_factory.mktemp("doc_plugins")
    with open(DOC) as fh:
        blocks = re.findall(r"```python\n(.*?)```", fh.read(), re.S)
    found = set()
    for block in blocks:
        match = re.search(r"^class (\w+)\(", block, re.M)
        if match and match.group(1) in EXAMPLES:
            name = EXAMPLES[match.group(1)]
            path = directory / f"{name}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            if "import" not in block:                    # a fragment: add what it uses
                block = "from qpsmtpd_py.api import DECLINED, Plugin\n" + block
            path.write_text(block)
            found.add(match.group(1))
    assert found == set(EXAMPLES), f"examples missing from the doc: {set(EXAMPLES) - found}"
    return str(directory)


@pytest.fixture
def server(doc_plugins, tmp_path):
    def make(plugins, files=None, where="srv"):
        cfg = ConfigDir(tmp_path / where, plugins=plugins + ["rcpt_ok", "queue/maildir {maildir}"],
                        files={"plugin_dirs": [doc_plugins, REAL], "rcpthosts": "example.test",
                               **(files or {})})
        return InProcessServer(cfg), cfg
    return make


def b64(text):
    return base64.b64encode(text.encode()).decode()


def mail(body):
    return ("HELO x", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "DATA",
            message_wire(body), "QUIT")


def test_dns_example(server):
    s, _ = server(["listed"], {"listed_zones": "dnsbl.test"})
    d = s.talk("HELO x", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "QUIT", remote_ip="127.0.0.2")
    assert d.pairs[3] == (550, "Your address is listed in dnsbl.test")
    d = s.talk("HELO x", "MAIL FROM:<a@b.test>", "RCPT TO:<u@example.test>", "QUIT", remote_ip="127.0.0.3")
    assert d.codes[3] == 250


def test_store_example(server, tmp_path):
    s, _ = server(["tooeager"], {"store_dir": str(tmp_path / "store")})
    codes = [s.talk("QUIT").codes[0] for _ in range(32)]
    assert codes[:30] == [220] * 30 and codes[30:] == [450, 450]


def test_scanner_example(server):
    s, cfg = server([f"virus/clamd_small clamd_socket {service_env('QPT_CLAMD_SOCKET')}"])
    d = s.talk(*mail("Subject: x\n\n" + EICAR))
    assert d.codes[5] == 552 and "Virus found" in d.replies[5].text
    d = s.talk(*mail("Subject: x\n\nhello"))
    assert d.codes[5] == 250
    s2, _ = server(["virus/clamd_small clamd_socket /nonexistent.sock"], where="dead")
    d = s2.talk(*mail("Subject: x\n\nhello"))
    assert d.codes[5] == 452                     # failure policy tempfail


def test_body_example(server):
    s, cfg = server(["footer"], {"footer_text": "sent via example"})
    d = s.talk(*mail("Subject: x\n\nhello"))
    assert d.codes[5] == 250
    [msg] = cfg.messages()
    assert msg.endswith(b"hello\n\n-- \nsent via example\n") and b"X-Footer: added" in msg


def test_capability_example(server):
    s, _ = server(["example_ext"])
    d = s.talk("EHLO x", "QUIT")
    assert "X-EXAMPLE 1" in d.replies[1].lines


def test_auth_example(server):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == "Basic " + b64("amy@x.test:pw")
            self.send_response(200 if ok else 401)
            if not ok:
                self.send_header("WWW-Authenticate", 'Basic realm="r"')
            self.end_headers()
        def log_message(self, *args):
            pass
    httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}/login"
    s, _ = server([f"auth/auth_example_http url {url}"], {"auth_allow_plaintext": "1"})
    ok = s.talk("EHLO x", "AUTH PLAIN " + b64("\0amy@x.test\0pw"), "QUIT")
    bad = s.talk("EHLO x", "AUTH PLAIN " + b64("\0amy@x.test\0no"), "QUIT")
    httpd.shutdown()
    httpd.server_close()                          # now refused: the service is down
    assert ok.codes[2] == 235 and bad.codes[2] == 535
    down = s.talk("EHLO x", "AUTH PLAIN " + b64("\0amy@x.test\0pw"), "QUIT")
    assert down.codes[2] == 454


def test_parse_hook_example(server):
    s, _ = server(["strict821"])
    d = s.talk("HELO x", "MAIL FROM:<a@b.test> SIZE=1", "MAIL FROM:<a@b.test>", "QUIT")
    assert d.pairs[2] == (501, "No parameters allowed in MAIL") and d.codes[3] == 250
    d = s.talk("EHLO x", "MAIL FROM:<a@b.test> SIZE=1", "QUIT")
    assert d.codes[2] == 250
