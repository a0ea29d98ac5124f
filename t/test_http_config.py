"""http_config against a real HTTP server run by the test: its answers replace config
files (here rcpthosts, which decides the RCPT replies), are cached on the fake clock,
and the files (or the last answer) serve when the server is down."""

import http.server
import threading

import pytest

import harness

FILES = {"rcpthosts": "example.test", "loglevel": "6"}


class ConfigServer:
    """GET /a/NAME and /b/NAME from `pages` (path -> text; missing: 404); counts hits."""

    def __init__(self):
        self.pages = {}
        self.hits = []
        self.status = None              # forced status for every answer, e.g. 503
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                app.hits.append(self.path)
                text = app.pages.get(self.path)
                status = app.status or (200 if text is not None else 404)
                body = (text or "").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, prefix):
        return f"http://127.0.0.1:{self.port}/{prefix}/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web():
    server = ConfigServer()
    yield server
    server.stop()


def rcpt_codes(server, *domains):
    d = server.talk("EHLO client.test", "MAIL FROM:<a@b.test>",
                    *[f"RCPT TO:<u@{domain}>" for domain in domains], "QUIT")
    return d.codes[3:-1]


def test_answer_replaces_the_file_and_is_cached(session_server, clock, web):
    web.pages["/a/rcpthosts"] = "# served\n\nhttp.test\n"
    server = session_server(f"http_config {web.url('a')} cache 60", files=FILES)
    assert rcpt_codes(server, "http.test", "example.test") == [250, 550]
    web.pages["/a/rcpthosts"] = "other.test\n"
    hits = len(web.hits)
    assert rcpt_codes(server, "http.test", "other.test") == [250, 550]    # cached
    assert len(web.hits) == hits
    clock.advance(61)
    assert rcpt_codes(server, "http.test", "other.test") == [550, 250]


def test_prefixes_in_order_and_404_falls_back_to_the_file(session_server, web):
    web.pages["/b/rcpthosts"] = "second.test\n"
    server = session_server(f"http_config {web.url('a')} {web.url('b')}", files=FILES)
    assert rcpt_codes(server, "second.test", "example.test") == [250, 550]
    server = session_server(f"http_config {web.url('a')}", files=FILES)
    assert rcpt_codes(server, "second.test", "example.test") == [550, 250]
    assert "/a/rcpthosts" in web.hits


def test_server_down_uses_the_last_answer_then_the_file(session_server, clock, web):
    web.pages["/a/rcpthosts"] = "http.test\n"
    server = session_server(f"http_config {web.url('a')} cache 10 retry 30", files=FILES)
    assert rcpt_codes(server, "http.test") == [250]
    web.status = 503                               # broken, then gone
    clock.advance(11)
    assert rcpt_codes(server, "http.test", "example.test") == [250, 550]
    web.stop()
    clock.advance(31)
    assert rcpt_codes(server, "http.test", "example.test") == [250, 550]
    assert f"error, {web.url('a')}" in server.stderr.getvalue() and "answered 503" in server.stderr.getvalue()


def test_server_down_without_an_answer_uses_the_file_and_asks_once(session_server, clock):
    port = harness.free_port()                     # nothing listens there
    server = session_server(f"http_config http://127.0.0.1:{port}/ retry 30", files=FILES)
    assert rcpt_codes(server, "example.test", "example.test") == [250, 250]
    log = server.stderr.getvalue()
    assert log.count("Connection refused") == 1, log    # not asked again within retry
    assert "using the config file for" in log and "not asking again for 30 s" in log


def test_bad_url_stops_startup(make_config):
    srv = make_config(["http_config ftp://x/", "rcpt_ok"], files=FILES)
    with srv.session(read_greeting=False) as c:
        assert c.closed()
    assert "'ftp://x/' is not an http:// or https:// URL" in c.stderr
