"""queue/http-forward against a real HTTP(S) server run by the test (http.server on
127.0.0.1 in a thread): what arrives, and what the client is told for each answer."""

import http.server
import os
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

import harness
from tools import require_tool

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}
MESSAGE = "Message-Id: <m1@b.test>\nSubject: hello & =more\n\n.dot line\nbody 100% üñí"   # + CRLF


class WebApp:
    """Records every POST; answers `status` after `delay` seconds."""

    def __init__(self, tls=None):
        self.requests = []
        self.status = 201
        self.delay = 0
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                app.requests.append((self.path, self.headers, self.rfile.read(length)))
                time.sleep(app.delay)
                try:
                    self.send_response(app.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass                    # the client gave up waiting (time-out test)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webapp():
    apps = []

    def start(tls=None):
        apps.append(WebApp(tls))
        return apps[-1]
    yield start
    for app in apps:
        app.stop()


def config(make_config, args):
    return make_config(["rcpt_ok", f"queue/http-forward {args}"], files=LOCAL)


def send(srv, rcpts=("u@example.test", "v@example.test"), sender="a@b.test"):
    with srv.session() as c:
        code, text = c.send_message(sender, list(rcpts), MESSAGE)
    return code, text, c


def test_form_fields_and_envelope(make_config, webapp):
    app = webapp()
    code, text, _ = send(config(make_config, f"http://user:pa%20ss@127.0.0.1:{app.port}/in?k=1"))
    assert code == 250 and text.endswith("Queued! (HTTP 201 Created)"), text
    path, headers, body = app.requests[0]
    assert path == "/in?k=1"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["X-Envelope-From"] == "<a@b.test>"
    assert headers.get_all("X-Envelope-To") == ["<u@example.test>", "<v@example.test>"]
    assert headers["Authorization"] == "Basic dXNlcjpwYSBzcw=="          # user:pa ss
    form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
    assert form["mailheader"][0].startswith("Received: from [192.0.2.10]")
    assert "Subject: hello & =more\n" in form["mailheader"][0]
    assert form["mailbody"] == [".dot line\nbody 100% üñí\n"]


def test_rfc822_over_https(make_config, webapp, tmp_path):
    require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    app = webapp(tls)
    url = f"https://127.0.0.1:{app.port}/raw"
    code, text, _ = send(config(make_config, f"{url} format rfc822 ca {cert}"), sender="")
    assert code == 250, text
    _, headers, body = app.requests[0]
    assert headers["Content-Type"] == "message/rfc822"
    assert headers["X-Envelope-From"] == "<>"
    assert body.startswith(b"Received: from [192.0.2.10]")
    assert body.endswith("\n\n.dot line\nbody 100% üñí\n".encode())
    # a server whose certificate we do not trust was never sent anything: 451
    code, text, c = send(config(make_config, f"{url} format rfc822"))
    assert code == 451 and "CERTIFICATE_VERIFY_FAILED" in text, text
    assert len(app.requests) == 1


@pytest.mark.parametrize("status", [500, 404, 302])
def test_other_answers_are_temporary(make_config, webapp, status):
    app = webapp()
    app.status = status
    code, text, c = send(config(make_config, f"http://127.0.0.1:{app.port}/"))
    assert code == 452 and f"Unable to queue message (HTTP {status} " in text, text
    assert f"fail, http://127.0.0.1:{app.port}/ answered {status}" in c.stderr


def test_slow_server_times_out_temporarily(make_config, webapp):
    app = webapp()
    app.delay = 3
    started = time.monotonic()
    code, text, _ = send(config(make_config, f"http://127.0.0.1:{app.port}/ timeout 0.5"))
    assert code == 452 and "timed out" in text, text
    assert time.monotonic() - started < 2.5


def test_server_down_is_451(make_config):
    port = harness.free_port()
    code, text, c = send(config(make_config, f"http://127.0.0.1:{port}/"))
    assert code == 451 and "Unable to queue message (Connection refused)" in text, text


def test_copy_mode_lets_the_next_queue_plugin_queue(make_config, webapp, tmp_path):
    app = webapp()
    srv = make_config(["rcpt_ok", f"queue/http-forward http://127.0.0.1:{app.port}/ copy 1",
                       "queue/maildir {maildir}"], files=LOCAL)
    code, text, _ = send(srv)
    assert code == 250 and "Queued!" in text and "HTTP" not in text, text
    assert len(app.requests) == 1 and len(srv.messages()) == 1
    app.status = 503                           # no copy: nothing is queued either
    code, text, _ = send(srv)
    assert code == 452, text
    assert len(srv.messages()) == 1


def test_bad_url_stops_startup(make_config):
    srv = config(make_config, "ftp://127.0.0.1/")
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "'ftp://127.0.0.1/' is not an http:// or https:// URL" in c.stderr
