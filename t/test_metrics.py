"""--metrics-listen (issue 14 item 4): Prometheus text from one metrics process that adds
up the events of every forked child, for qpsmtpd-prefork and qpsmtpd-forkserver."""

import os
import re
import signal
import urllib.request

import pytest

from harness import free_port
from qpsmtpd_py.metrics import Aggregator
from serverproc import Server, wait_until


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def value(text, series):
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("program, args", [("qpsmtpd-prefork", ["--children", "4", "--idle-children", "2"]),
                                           ("qpsmtpd-forkserver", [])])
def test_counters_add_up_across_children(mail_config, program, args):
    port = free_port()
    srv = mail_config()
    with Server(program, srv, *args, "--metrics-listen", f"127.0.0.1:{port}") as server:
        for n in range(3):                       # three connections, in different children
            c = server.client()
            assert c.send_message("a@b.test", ["u@example.test"], f"Subject: {n}\n\nbody")[0] == 250
            c.cmd("MAIL FROM:<a@b.test>")
            assert c.cmd("RCPT TO:<x@remote.example>")[0] == 550
            c.cmd("QUIT")
            c.close()

        def counted():
            text = scrape(port)
            return (value(text, 'qpsmtpd_connections_total{end="quit"}') == 3
                    and value(text, 'qpsmtpd_session_seconds_count') == 3 and text)
        text = wait_until(counted, what="three connections counted")
    assert value(text, 'qpsmtpd_transactions_total{code="250",plugin="queue/maildir",result="queued"}') == 3, text
    assert value(text, 'qpsmtpd_refusals_total{code="550",command="rcpt",plugin="rcpt_ok"}') == 3, text
    assert value(text, 'qpsmtpd_transactions_total{code="",plugin="",result="no_message"}') == 3, text
    assert value(text, 'qpsmtpd_session_seconds_count') == 3, text
    assert value(text, 'qpsmtpd_hook_seconds_count{hook="rcpt"}') == 6, text
    assert value(text, 'qpsmtpd_children{state="busy"}') is not None, text
    assert "# TYPE qpsmtpd_hook_seconds histogram" in text


def test_other_paths_get_404(mail_config):
    port = free_port()
    with Server("qpsmtpd-forkserver", mail_config(), "--metrics-listen", f"127.0.0.1:{port}"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            scrape(port, "/")


def test_a_port_in_use_stops_start_up(mail_config):
    port = free_port()
    with Server("qpsmtpd-forkserver", mail_config(), "--metrics-listen", f"127.0.0.1:{port}"):
        second = Server("qpsmtpd-forkserver", mail_config(), "--metrics-listen", f"127.0.0.1:{port}",
                        wait=False)
        assert second.proc.wait(timeout=20) == 1
        assert f"--metrics-listen 127.0.0.1:{port}: Address already in use" in second.log


@pytest.mark.no_services
def test_histogram_and_label_text():
    agg = Aggregator()
    agg.add(["c", "qpsmtpd_refusals_total", {"command": "rcpt", "code": 550, "plugin": 'a"b'}, 1])
    agg.add(["h", "qpsmtpd_session_seconds", {}, 0.02])
    agg.add(["h", "qpsmtpd_session_seconds", {}, 3.0])
    agg.add(["c", "not_ours", {}, 1])
    text = agg.text()
    assert 'qpsmtpd_refusals_total{code="550",command="rcpt",plugin="a\\"b"} 1' in text
    assert 'qpsmtpd_session_seconds_bucket{le="0.05"} 1' in text
    assert 'qpsmtpd_session_seconds_bucket{le="5.0"} 2' in text
    assert 'qpsmtpd_session_seconds_bucket{le="+Inf"} 2' in text
    assert "not_ours" not in text


def test_admin_status_reload_and_stop(mail_config, tmp_path, capsys):
    """qpsmtpd-admin: status from the metrics process (a busy child with its client),
    reload and a graceful stop through the pid file."""
    from qpsmtpd_py.cli.admin import main as admin
    port = free_port()
    pid_file = str(tmp_path / "qpsmtpd.pid")
    with Server("qpsmtpd-prefork", mail_config(), "--children", "3", "--idle-children", "2",
                "--metrics-listen", f"127.0.0.1:{port}", "--pid-file", pid_file) as server:
        c = server.client()              # a session in progress

        def busy():
            assert admin(["--metrics", f"127.0.0.1:{port}", "status"]) == 0
            out = capsys.readouterr().out
            return re.search(r"^\s+\d+  busy\s+[\d.]+  127\.0\.0\.1$", out, re.M) and out
        out = wait_until(busy, what="a busy child in the status")
        assert out.startswith(f"master {server.pid}: ")
        assert admin(["--pid-file", pid_file, "reload"]) == 0
        wait_until(lambda: "reload done" in server.log, what="the reload")
        c.cmd("QUIT")
        c.close()
        assert admin(["--pid-file", pid_file, "--wait", "20", "stop"]) == 0
        assert server.proc.wait(timeout=5) == 0
    assert admin(["--metrics", f"127.0.0.1:{port}", "status"]) == 1
    assert admin(["reload"]) == 1 and "need --pid-file" in capsys.readouterr().err


def test_the_metrics_process_holds_no_smtp_port(mail_config):
    """After TERM the master closes its ports at once; the metrics process must not keep
    them open (a client would wait in a backlog nobody reads)."""
    port = free_port()
    with Server("qpsmtpd-forkserver", mail_config(), "--metrics-listen", f"127.0.0.1:{port}") as server:
        kids = list(server.children())
        assert len(kids) == 1                      # the metrics process, no session yet
        fds = os.listdir(f"/proc/{kids[0]}/fd")
        inodes = {os.readlink(f"/proc/{kids[0]}/fd/{fd}") for fd in fds}
        master = {os.readlink(f"/proc/{server.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{server.pid}/fd")}
        smtp = {i for i in master if i.startswith("socket:")} - inodes
        assert smtp, "the master's SMTP socket is not shared with the metrics process"
        assert "qpsmtpd-forkserver metrics" in open(f"/proc/{kids[0]}/cmdline").read().replace("\0", " ")


def test_no_count_is_lost_under_concurrent_load(mail_config):
    """Forty sessions at once (the kernel queues only ~10 datagrams): every one counted."""
    import threading
    port = free_port()
    with Server("qpsmtpd-forkserver", mail_config(), "--limit-connections", "40",
                "--metrics-listen", f"127.0.0.1:{port}") as server:
        def session():
            c = server.client()
            c.send_message("a@b.test", ["u@example.test"], "Subject: load\n\nbody")
            c.cmd("QUIT")
            c.close()
        threads = [threading.Thread(target=session) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(lambda: value(scrape(port), 'qpsmtpd_connections_total{end="quit"}') == 40,
                   what="forty connections counted")
        text = scrape(port)
    assert value(text, 'qpsmtpd_hook_seconds_count{hook="rcpt"}') == 40, text


def test_scanner_latency(mail_config):
    """A content scanner's time (spamd of t/services) is a histogram by scanner."""
    from harness import service_env
    port = free_port()
    cfg = mail_config(f"spamassassin spamd_socket {service_env('QPT_SPAMD_SOCKET')}")
    with Server("qpsmtpd-forkserver", cfg, "--metrics-listen", f"127.0.0.1:{port}") as server:
        c = server.client()
        assert c.send_message("a@b.test", ["u@example.test"], "Subject: ham\n\nhello")[0] == 250
        c.cmd("QUIT")
        c.close()
        text = wait_until(lambda: (lambda t: "qpsmtpd_scanner_seconds_count" in t and t)(scrape(port)),
                          what="the scanner histogram")
    assert re.search(r'^qpsmtpd_scanner_seconds_count\{scanner="\w+"\} 1$', text, re.M), text


def test_dns_latency(mail_config):
    """The client's PTR lookup (rDNS on, the test DNS server) is a DNS histogram entry."""
    port = free_port()
    with Server("qpsmtpd-forkserver", mail_config(), "--metrics-listen", f"127.0.0.1:{port}") as server:
        c = server.client()
        c.cmd("QUIT")
        c.close()
        text = wait_until(lambda: (lambda t: "qpsmtpd_dns_seconds_count" in t and t)(scrape(port)),
                          what="the DNS histogram")
    assert re.search(r'^qpsmtpd_dns_seconds_count\{type="PTR"\} 1$', text, re.M), text


def test_store_size(mail_config, tmp_path):
    """With a plugin on the LMDB store (greylisting), the store's size on disk is a gauge."""
    port = free_port()
    cfg = mail_config("greylisting", files={"store_dir": str(tmp_path / "store")})
    with Server("qpsmtpd-forkserver", cfg, "--metrics-listen", f"127.0.0.1:{port}"):
        text = scrape(port)
    size = value(text, "qpsmtpd_store_bytes")
    assert size is not None and size > 0, text


@pytest.mark.parametrize("program", ["qpsmtpd-prefork", "qpsmtpd-forkserver"])
def test_stop_reaps_the_metrics_process(mail_config, program):
    """The master ends and reaps its metrics process before it exits: systemd
    (KillMode=mixed) SIGKILLs whatever is left of the unit and logs it at every stop.
    The metrics process is stopped (SIGSTOP) first, so it cannot end by itself on its
    death signal: the master has to kill it past the grace period."""
    port = free_port()
    with Server(program, mail_config(), "--metrics-listen", f"127.0.0.1:{port}") as server:
        metrics = wait_until(lambda: [pid for pid, title in server.children().items()
                                      if title.endswith(" metrics")], what="metrics process")[0]
        os.kill(metrics, signal.SIGSTOP)
        server.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        assert not os.path.exists(f"/proc/{metrics}"), \
            f"metrics process {metrics} outlived the master: {open(f'/proc/{metrics}/status').read()[:200]}"
