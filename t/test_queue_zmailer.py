"""queue/zmailer-queue: ZMailer's router input written atomically (no ZMailer runs
here: the test reads the spool the way its router would)."""

import os

LOCAL = {"rcpthosts": "example.test", "loglevel": "6"}


def postoffice(tmp_path):
    base = tmp_path / "postoffice"
    for sub in ("public", "router"):
        (base / sub).mkdir(parents=True)
    return base


def router_read(path):
    """(envelope lines, message) as ZMailer's router splits a file at env-end."""
    data = path.read_bytes()
    head, message = data.split(b"\nenv-end\n", 1)
    return head.decode().split("\n"), message.decode()


def send(srv, sender="a@b.test"):
    with srv.session(env={"TCPREMOTEHOST": "client.example.test"}) as c:
        code, text = c.send_message(sender, ["u@example.test", "v@example.test"],
                                    "Message-Id: <z1@b.test>\nSubject: z\n\nbody")
    return code, text, c


def test_router_file_named_by_inode(make_config, tmp_path):
    base = postoffice(tmp_path)
    srv = make_config(["rcpt_ok", f"queue/zmailer-queue {base}"], files=LOCAL)
    code, text, _ = send(srv)
    files = list((base / "router").iterdir())
    assert len(files) == 1 and os.listdir(base / "public") == []
    inode = files[0].stat().st_ino
    assert code == 250 and text.endswith(f"Queued! <z1@b.test> (ZMailer router file {inode})"), text
    assert files[0].name == str(inode) and files[0].stat().st_nlink == 1
    envelope, message = router_read(files[0])
    assert envelope == ["external", "rcvdfrom client.example.test (192.0.2.10)", "with esmtp",
                        "from <a@b.test>", "to <u@example.test>", "to <v@example.test>"]
    assert message.startswith("Received: from client.example.test (HELO client.example.test)")
    assert message.endswith("Subject: z\n\nbody\n")
    code, _, _ = send(srv, sender="")                 # a bounce: from <>
    assert code == 250
    second = [f for f in (base / "router").iterdir() if f != files[0]][0]
    assert "from <>" in router_read(second)[0]


def test_missing_spool_is_451_and_leaves_nothing(make_config, tmp_path):
    base = postoffice(tmp_path)
    (base / "router").rmdir()
    srv = make_config(["rcpt_ok", f"queue/zmailer-queue {base}"], files=LOCAL)
    code, text, c = send(srv)
    assert code == 451 and "Unable to queue message (no such file or directory)" in text, text
    assert os.listdir(base / "public") == []
    assert f"error, cannot queue into {base}/router" in c.stderr
