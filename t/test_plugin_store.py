"""self.store (plugin API v1) in a real prefork server: opened in the master before
fork, used by every worker, one counter for all (docs/plugin-api.md)."""

import threading

from serverproc import Server


def test_self_store_is_shared_by_workers_forked_after_it_was_opened(mail_config, tmp_path):
    srv = mail_config("t_store", files={"store_dir": str(tmp_path / "store")})
    answers = []

    def session():
        with server.client() as c:
            code, text = c.cmd("HELO client.test")
            answers.append((code, text))
            c.cmd("QUIT")

    with Server("qpsmtpd-prefork", srv, "--children", "3", "--idle-children", "3") as server:
        for _ in range(3):                       # three rounds of three at once
            threads = [threading.Thread(target=session) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
    assert all(code == 250 for code, _ in answers), answers
    counts = sorted(int(text.split()[1]) for _, text in answers)
    assert counts == list(range(1, 10))         # no increment lost, none counted twice
    pids = {text.split()[3] for _, text in answers}
    assert len(pids) >= 2, answers              # really several processes
