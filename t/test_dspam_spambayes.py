"""dspam and spambayes against stand-ins of their command-line programs
(t/stubs/scanners/dspam, sb_filter.py): command lines, headers, notes, refusals,
reject agree with the spamassassin note, autolearn training runs, failures."""

import os

import pytest

from scanhelp import GTUBE, STUBS, data_reply, header_of, message, transaction
from qpsmtpd_py.config import ConfigError

pytestmark = pytest.mark.no_services
DSPAM = os.path.join(STUBS, "scanners", "dspam")
SB = os.path.join(STUBS, "scanners", "sb_filter.py")
MISBEHAVE = os.path.join(STUBS, "scanners", "misbehave")


@pytest.fixture
def runs(monkeypatch, tmp_path):
    log = tmp_path / "argv.log"
    monkeypatch.setenv("QPT_STUB_LOG", str(log))

    def read():
        return log.read_text().splitlines() if log.exists() else []
    return read


def talk(session_server, *lines, text=message("hello\n"), **kw):
    return session_server(*lines, files={"loglevel": "6"}).talk(*transaction(text, **kw))


def test_dspam_marks_and_refuses_spam(session_server, runs):
    d = talk(session_server, f"dspam dspam_bin {DSPAM}", text=message(GTUBE + "\n"))
    assert data_reply(d) == (552, "dspam says, no spam please (#5.6.1)")
    argv, stdin = runs()
    assert argv.split()[2:] == ["--user", "u@example.test", "--mode=tum", "--process",
                                "--deliver=summary", "--stdout"]
    assert stdin == "stdin X-Envelope-From: <a@b.test>"


def test_dspam_ham_headers_and_note(session_server):
    d = talk(session_server, f"dspam dspam_bin {DSPAM}", "t_keepnote dspam",
             text=message("hello\n", "X-DSPAM-Result: Innocent, forged\nSubject: x\n"))
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert fields["x-dspam-result"] == ["Innocent, probability=0.0023, confidence=1.00"]
    assert fields["x-dspam-signature"] == ["4f8dae6a446008399211546"]
    assert d.connection.notes["t_keepnote"]["dspam"] == {
        "class": "Innocent", "result": "Innocent", "probability": "0.0023", "confidence": "1.00",
        "signature": "4f8dae6a446008399211546"}


def test_dspam_several_recipients_reject_temp_and_0(session_server, runs):
    d = talk(session_server, f"dspam dspam_bin {DSPAM} reject_type temp", text=message(GTUBE + "\n"),
             recipients=("u@example.test", "v@example.test"))
    assert data_reply(d) == (452, "dspam says, no spam please (#4.6.1)")
    assert runs()[0].split()[3] != "u@example.test"          # the server's own user
    d = talk(session_server, f"dspam dspam_bin {DSPAM} reject 0", text=message(GTUBE + "\n"))
    assert data_reply(d)[0] == 250 and "skip, reject disabled" in d.log


@pytest.mark.parametrize("sa, code", [("is_spam=Yes score=9", 552),
                                      ("is_spam=No score=1", 250)])
def test_dspam_reject_agree(session_server, sa, code):
    d = talk(session_server, f"t_txnnote spamassassin {sa}", f"dspam dspam_bin {DSPAM} reject agree",
             text=message(GTUBE + "\n"))
    assert data_reply(d)[0] == code
    if code == 552:
        assert data_reply(d)[1] == "we agree, no spam please"
        assert d.connection.notes["karma"] == -2


def test_dspam_autolearn_from_spamassassin(session_server, runs):
    sa = "is_spam=Yes autolearn=spam"
    d = talk(session_server, f"t_txnnote spamassassin {sa}",
             f"dspam dspam_bin {DSPAM} reject 0 autolearn spamassassin")
    assert data_reply(d)[0] == 250 and "training SA FN as spam" in d.log
    training = [line.split()[2:] for line in runs() if not line.startswith("stdin")][1]
    assert training == ["--user", "u@example.test", "--mode=toe", "--source=error",
                        "--class=spam", "--deliver=summary", "--stdout"]


def test_dspam_failures(session_server, monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="is not an executable file"):
        session_server(f"dspam dspam_bin {tmp_path}/nothing")
    with pytest.raises(ConfigError, match="reject '2'"):
        session_server(f"dspam dspam_bin {DSPAM} reject 2")
    monkeypatch.setenv("QPT_STUB_MODE", "exit:1")
    d = talk(session_server, f"dspam dspam_bin {MISBEHAVE}")
    assert data_reply(d)[0] == 452
    d = talk(session_server, f"dspam dspam_bin {MISBEHAVE} failure accept")
    assert header_of(d.messages[0])["x-scan-failed"][0].startswith("dspam: dspam (")


@pytest.mark.parametrize("body, verdict", [(GTUBE, "spam; 1.00"), ("maybe\n", "unsure; 0.50"),
                                           ("hello\n", "ham; 0.00")])
def test_spambayes(session_server, runs, body, verdict):
    d = talk(session_server, f"spambayes sb_filter {SB}", "t_keepnote spambayes",
             text=message(body, "X-Spambayes-Classification: ham; forged\nSubject: x\n"))
    assert data_reply(d)[0] == 250
    assert header_of(d.messages[0])["x-spambayes-classification"] == [verdict]
    classification, score = verdict.split("; ")
    assert d.connection.notes["t_keepnote"]["spambayes"] == {"classification": classification,
                                                            "score": score}
    assert runs()[0].split()[2:] == []


def test_spambayes_failure_and_timeout(session_server, monkeypatch):
    monkeypatch.setenv("QPT_STUB_MODE", "hang")
    d = talk(session_server, f"spambayes sb_filter {MISBEHAVE} timeout 0.5")
    assert data_reply(d) == (452, "Unable to scan the message, try again later")
