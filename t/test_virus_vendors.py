"""The other virus scanners against stand-ins (t/stubs/scanners: aveclient, bdc,
antivir, kavscanner, uvscan; t/stubs/sophie.py) that check the vendor's documented
command line and answer with its exit codes and output; virus/check_for_hi_virus and
virus/klez_filter. No daemons needed."""

import os
import time
import zipfile

import pytest

from scanhelp import EICAR, STUBS, attachment_message, data_reply, header_of, message, transaction
from stubs.sophie import SophieStub
from qpsmtpd_py.config import ConfigError

pytestmark = pytest.mark.no_services
SCANNERS = os.path.join(STUBS, "scanners")
MISBEHAVE = os.path.join(SCANNERS, "misbehave")
ME = "mx.example.test"


def stub(name):
    return os.path.join(SCANNERS, name)


@pytest.fixture
def scan(session_server, monkeypatch, tmp_path):
    """scan(plugin line, message text) -> (dialogue, [argv of each scanner run])."""
    log = tmp_path / "argv.log"
    monkeypatch.setenv("QPT_STUB_LOG", str(log))

    def run(line, text, **kw):
        if log.exists():
            log.unlink()
        d = session_server(line, files={"loglevel": "6"}).talk(*transaction(text), **kw)
        lines = log.read_text().splitlines() if log.exists() else []
        runs = [l.split()[2:] for l in lines if not l.startswith("child ")]
        for argv in runs:                 # the temporary message file is gone again
            assert os.path.basename(argv[-1]).startswith("qpsmtpd-scan-")
            assert not os.path.exists(argv[-1])
        return d, runs
    return run


VIRUS = attachment_message(EICAR)
CLEAN = attachment_message("a harmless text\n")


# -- aveclient ----------------------------------------------------------------------------------------
def test_aveclient(scan, tmp_path):
    sock = tmp_path / "aveserver"
    sock.write_text("")
    line = f"virus/aveclient avclient_bin {stub('aveclient')} avdaemon_sock {sock}"
    d, runs = scan(line, VIRUS)
    assert runs[0][:3] == ["-p", str(sock), "-s"]
    code, reply = data_reply(d)
    assert code == 552 and reply.startswith("Virus found: REPORT: ") and "infected: EICAR-Test-File" in reply
    d, _ = scan(line, CLEAN)
    assert header_of(d.messages[0])["x-virus-checked"] == [f"Checked by Kaspersky on {ME}"]


def test_aveclient_errors(scan, tmp_path):
    line = f"virus/aveclient avclient_bin {stub('aveclient')} avdaemon_sock {tmp_path}/gone"
    d, _ = scan(line, CLEAN)                      # exit 1: aveserver unreachable
    assert data_reply(d) == (452, "Unable to scan the message, try again later")
    d, _ = scan(line + " blockonerror 1", CLEAN)
    assert data_reply(d) == (552, f"Unable to scan for virus, please contact admin of {ME}, "
                                  "if you feel this is an error!")
    d, _ = scan(line + " failure accept", CLEAN)
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert "x-virus-checked" not in fields
    assert fields["x-scan-failed"][0].startswith("virus/aveclient: aveclient (")


# -- bitdefender ----------------------------------------------------------------------------------------
def test_bitdefender(scan):
    line = f"virus/bitdefender bitdefender_location {stub('bdc')}"
    d, runs = scan(line, VIRUS)
    assert runs[0][:3] == ["--mail", "--all", "--arc"]
    assert data_reply(d) == (552, "Virus Found: EICAR-Test-File")
    d, _ = scan(line + " deny_viruses no", VIRUS)
    assert header_of(d.messages[0])["x-virus-details"] == ["EICAR-Test-File"]
    d, runs = scan(line, message(EICAR + "\n"))             # not multipart: not scanned
    assert data_reply(d)[0] == 250 and runs == []
    d, runs = scan(line + " max_size 1", attachment_message(EICAR + "x" * 2000))
    assert data_reply(d)[0] == 250 and runs == []
    assert data_reply(scan(line, CLEAN)[0])[0] == 250


# -- hbedv -----------------------------------------------------------------------------------------------
def test_hbedv(scan, session_server, monkeypatch, tmp_path):
    line = f"virus/hbedv hbedvscanner {stub('antivir')}"
    d, runs = scan(line, VIRUS)
    assert runs[0][:6] == ["--archive-max-recursion=50", "--alltypes", "-z", "-noboot",
                           "-nombr", "-rs"]
    assert data_reply(d) == (552, "Virus found: EICAR-Test-File")
    d, _ = scan(line, CLEAN)
    fields = header_of(d.messages[0])
    assert fields["x-h+bedv-virus-checked"] == ["Checked"] and "x-h+bedv-virus-found" not in fields


def test_hbedv_deny_list(session_server):
    line = f"virus/hbedv hbedvscanner {stub('antivir')}"
    srv = session_server(line, files={"hbedv_deny": "I-Worm\\..*"})
    d = srv.talk(*transaction(VIRUS))
    assert data_reply(d)[0] == 250
    fields = header_of(d.messages[0])
    assert fields["x-h+bedv-virus-found"] == ["Yes"]
    assert fields["x-h+bedv-virus-details"] == ["EICAR-Test-File"]
    srv = session_server(line, files={"hbedv_deny": "eicar-.*"})
    assert data_reply(srv.talk(*transaction(VIRUS)))[0] == 552


# -- kavscanner ------------------------------------------------------------------------------------------
def test_kavscanner_marks_and_copies_never_refuses(scan):
    line = f"virus/kavscanner kavscanner_bin {stub('kavscanner')} bcc_virusadmin virusadmin@example.test"
    d, runs = scan(line, VIRUS)
    assert runs[0][:6] == ["-Y", "-P", "-B", "-MP", "-MD", "-*"]
    assert data_reply(d)[0] == 250
    [msg] = d.messages
    fields = header_of(msg)
    assert fields["x-virus-found"] == ["Yes"]
    assert fields["x-virus-details"] == ["infected by: EICAR-Test-File; suspicions: "]
    assert fields["x-virus-checked"] == [f"Checked by {ME}"]
    assert msg["recipients"] == ["<u@example.test>", "<virusadmin@example.test>"]
    d, _ = scan(line, CLEAN)
    assert "x-virus-found" not in header_of(d.messages[0])


# -- uvscan --------------------------------------------------------------------------------------------
def locked_zip(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("secret.txt", "data")
    data = bytearray(path.read_bytes())
    data[6] |= 1                                   # the "encrypted" flag of the entry
    return bytes(data)


def test_uvscan(scan, tmp_path):
    line = f"virus/uvscan uvscan_location {stub('uvscan')}"
    d, runs = scan(line + " deny_viruses yes", VIRUS)
    assert runs[0][:4] == ["--mime", "--unzip", "--secure", "--noboot"]
    assert data_reply(d) == (552, "Virus Found: the EICAR-Test-File virus !!!")
    d, _ = scan(line, VIRUS)                       # qpsmtpd's default: mark only
    assert header_of(d.messages[0])["x-virus-found"] == ["Yes"]
    d, _ = scan(line, CLEAN)
    assert header_of(d.messages[0])["x-virus-checked"] == [f"Checked by McAfee uvscan on {ME}"]
    import base64
    zipped = CLEAN.replace(base64.encodebytes(b"a harmless text\n").decode(),
                           base64.encodebytes(locked_zip(tmp_path)).decode())
    d, _ = scan(line, zipped)
    assert data_reply(d) == (552, "We do not accept password-protected zip files!")


# -- sophie ----------------------------------------------------------------------------------------------
@pytest.fixture
def sophie(tmp_path):
    made = []

    def make(**kw):
        made.append(SophieStub(str(tmp_path / f"sophie{len(made)}"), **kw))
        return made[-1]
    yield make
    for daemon in made:
        daemon.close()


def test_sophie(session_server, sophie):
    daemon = sophie()
    srv = session_server(f"virus/sophie sophie_socket {daemon.path}")
    assert data_reply(srv.talk(*transaction(VIRUS))) == (552, "Virus Found: EICAR-Test-File")
    d = srv.talk(*transaction(CLEAN))
    assert header_of(d.messages[0])["x-virus-checked"] == [f"Checked by SOPHIE on {ME}"]
    assert len(daemon.requests) == 2 and not any(os.path.exists(p) for p in daemon.requests)
    srv = session_server(f"virus/sophie sophie_socket {daemon.path} deny_viruses no")
    assert header_of(srv.talk(*transaction(VIRUS)).messages[0])["x-virus-found"] == ["Yes"]


def test_sophie_silent_or_gone(session_server, sophie, tmp_path):
    daemon = sophie(silent=True)
    srv = session_server(f"virus/sophie sophie_socket {daemon.path} timeout 1")
    start = time.monotonic()
    d = srv.talk(*transaction(CLEAN))
    assert data_reply(d)[0] == 452 and time.monotonic() - start < 2.5
    srv = session_server(f"virus/sophie sophie_socket {tmp_path}/none failure accept")
    assert data_reply(srv.talk(*transaction(CLEAN)))[0] == 250


# -- every program scanner: a hanging or crashing scanner --------------------------------------------
PROGRAM_LINES = {
    "aveclient": "virus/aveclient avclient_bin {p}",
    "bitdefender": "virus/bitdefender bitdefender_location {p}",
    "hbedv": "virus/hbedv hbedvscanner {p}",
    "kavscanner": "virus/kavscanner kavscanner_bin {p}",
    "uvscan": "virus/uvscan uvscan_location {p}",
}


@pytest.mark.parametrize("name", sorted(PROGRAM_LINES))
def test_hanging_scanner_costs_its_timeout(scan, monkeypatch, name):
    monkeypatch.setenv("QPT_STUB_MODE", "hang")
    line = PROGRAM_LINES[name].format(p=MISBEHAVE) + " timeout 0.5"
    start = time.monotonic()
    d, runs = scan(line, CLEAN)
    assert data_reply(d)[0] == 452 and 0.4 < time.monotonic() - start < 1.5
    assert len(runs) == 1
    monkeypatch.setenv("QPT_STUB_MODE", "kill")
    d, _ = scan(PROGRAM_LINES[name].format(p=MISBEHAVE) + " failure accept", CLEAN)
    assert data_reply(d)[0] == 250
    assert "killed by signal 9" in header_of(d.messages[0])["x-scan-failed"][0]


def test_bad_program_path_stops_startup(session_server):
    with pytest.raises(ConfigError, match="avclient_bin"):
        session_server("virus/aveclient avclient_bin 'x;rm'")
    with pytest.raises(ConfigError, match="bcc_virusadmin"):
        session_server("virus/kavscanner bcc_virusadmin nobody")


# -- check_for_hi_virus and klez_filter ----------------------------------------------------------------
def test_check_for_hi_virus(session_server):
    srv = session_server("virus/check_for_hi_virus")
    hi = CLEAN.replace('filename="eicar.com"', 'filename="other.exe"')
    assert data_reply(srv.talk(*transaction(hi))) == (552, "Probably the 'Hi' virus")
    assert data_reply(srv.talk(*transaction(CLEAN)))[0] == 250


def test_klez_filter(session_server):
    srv = session_server("virus/klez_filter")
    klez = message("--B\nContent-type: application/octet-stream\n\n"
                   "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\n" + "A" * 76 * 900 + "\n")
    assert data_reply(srv.talk(*transaction(klez))) == (552, "Klez Virus Detected")
    small = message("--B\nContent-type: application/octet-stream\n\n"
                    "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\n")
    assert data_reply(srv.talk(*transaction(small)))[0] == 250
    late = message("x\n" * 50 + "Content-type: application/x\n"
                   "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA\n" + "A" * 76 * 900 + "\n")
    assert data_reply(srv.talk(*transaction(late)))[0] == 250
