"""scripts/install (issue 14 item 2) into a scratch root (--destdir): the venv under
/opt/qpsmtpd-py, a config dir of our own, units rendered with the real paths that
`systemd-analyze verify` accepts, the docs and manual pages where the units'
Documentation= points (every page renders with `man -l` without a warning); a second
run changes nothing an admin edited. No real /opt, /etc or user is touched."""

import glob
import os
import re
import shutil
import subprocess
import sysconfig

import pytest

from tools import require_tool

pytestmark = pytest.mark.no_services

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("qpsmtpd-prefork.service", "qpsmtpd-forkserver.service", "qpsmtpd.socket",
         "qpsmtpd@.service", "qpsmtpd-prefork.socket")


def prepare_venv(dest):
    """The venv the script would make, seeing this test venv's packages (setuptools,
    wheel and the dependencies) through a .pth file: the test works offline."""
    venv = dest / "opt" / "qpsmtpd-py"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    site = glob.glob(str(venv / "lib" / "python3*" / "site-packages"))[0]
    with open(os.path.join(site, "test-deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def install(dest):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "install"), "--destdir", str(dest),
                           "--pip-args", "--no-deps --no-index --no-build-isolation"],
                          capture_output=True, text=True, timeout=600, cwd="/")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("root")
    prepare_venv(dest)
    result = install(dest)
    assert result.returncode == 0, result.stderr
    return dest


def test_units_are_rendered_with_the_real_paths(installed):
    for name in UNITS:
        text = (installed / "etc" / "systemd" / "system" / name).read_text()
        assert "/usr/local/bin" not in text and "/etc/qpsmtpd " not in text
        if name.endswith(".service"):
            assert "Environment=QPSMTPD_CONFIG=/etc/qpsmtpd-py\n" in text
            assert "ExecStart=/opt/qpsmtpd-py/bin/qpsmtpd" in text
            assert "StateDirectory=qpsmtpd-py\n" in text and "LogsDirectory=qpsmtpd-py\n" in text
        if name in ("qpsmtpd-prefork.service", "qpsmtpd-forkserver.service"):
            assert "--metrics-listen 127.0.0.1:9125\n" in text    # qpsmtpd-admin status's default
    assert (installed / "usr/share/doc/qpsmtpd-py/servers.md").is_file()
    assert (installed / "usr/share/doc/qpsmtpd-py/README.md").is_file()


def installed_page(root, name, section):
    """The page `man` finds on its path (/usr/local/share/man) in the scratch root."""
    link = root / "usr/local/share/man" / f"man{section}" / f"{name}.{section}"
    assert link.is_symlink(), f"{name}({section}) is not linked into /usr/local/share/man"
    target = os.readlink(link)
    assert target.startswith("/opt/qpsmtpd-py/share/man/"), target
    return root / target.lstrip("/")


def test_every_documentation_link_of_the_units_is_installed(installed):
    for name in UNITS:
        text = (installed / "etc" / "systemd" / "system" / name).read_text()
        (line,) = re.findall(r"^Documentation=(.*)$", text, re.M)
        kinds = set()
        for uri in line.split():
            kind, _, rest = uri.partition(":")
            kinds.add(kind)
            if kind == "man":
                page, section = re.fullmatch(r"(.+)\((\d)\)", rest).groups()
                assert installed_page(installed, page, section).is_file(), uri
            else:
                assert kind == "file" and (installed / rest.lstrip("/")).is_file(), uri
        assert kinds == {"man", "file"}, line


def render(pages):
    """man -l of each page (several man processes: the machine has two cores), the
    way an admin reads them; groff's warnings (all of them: -ww) go to stderr."""
    require_tool("man")
    env = {**os.environ, "LANG": "C.UTF-8", "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""}
    batches = [pages[i::4] for i in range(4)]
    procs = [subprocess.Popen(["man", "--warnings=w", "-l", *map(str, batch)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for batch in batches if batch]
    out = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in out]
    return "".join(o for o, _ in out), "".join(e for _, e in out)


def test_manual_pages_render_without_warnings(installed):
    mandir = installed / "opt/qpsmtpd-py/share/man"
    pages = sorted(mandir.glob("man*/*"))
    sections = {p.parent.name for p in pages}
    assert sections == {"man1", "man5", "man7", "man8"}, sections
    scripts = subprocess.run([str(installed / "opt/qpsmtpd-py/bin/python"), "-c",
                              "import importlib.metadata as m; print(' '.join(e.name for e in "
                              "m.distribution('qpsmtpd_py').entry_points if e.group == 'console_scripts'))"],
                             capture_output=True, text=True, check=True).stdout.split()
    for script in scripts:           # one page per console script: servers in 8, tools in 1
        section = 8 if script in ("qpsmtpd", "qpsmtpd-prefork", "qpsmtpd-forkserver") else 1
        installed_page(installed, script, section)
    plugins = subprocess.run([str(installed / "opt/qpsmtpd-py/bin/qpsmtpd-doc")], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    names = [line.split()[0] for line in plugins if line.strip()]
    assert len(names) > 100
    for plugin in names:             # and one per plugin, '/' as '-'
        installed_page(installed, "qpsmtpd-plugin-" + plugin.replace("/", "-"), 7)
    text, warnings = render(pages)
    assert warnings == "", warnings
    for page in pages:               # each one rendered, with its NAME line
        assert re.search(rf"\n {{7}}{re.escape(page.stem)} +- +\S", text), page.name


def test_pages_show_the_options_and_plugin_arguments(installed):
    text, warnings = render([installed_page(installed, "qpsmtpd-prefork", 8),
                             installed_page(installed, "qpsmtpd-plugin-greylisting", 7),
                             installed_page(installed, "qpsmtpd-plugin-queue-maildir", 7),
                             installed_page(installed, "qpsmtpd-config", 5)])
    assert warnings == ""
    assert re.search(r"\n {7}--children N\n {14}\S", text), text[:3000]     # an option and its help
    assert "--metrics-listen ADDR:PORT" in text
    assert re.search(r"grey_timeout N +\S", text)                         # a plugin's argument
    assert "QPSMTPD-PLUGIN-QUEUE-MAILDIR(7)" in text
    assert re.search(r"\n {7}store_dir\n", text)                           # a config file


def test_installed_units_pass_systemd_analyze_verify(installed):
    require_tool("systemd-analyze")
    units = []
    for name in UNITS:      # ExecStart= must be executable: the scratch root's venv scripts
        text = (installed / "etc/systemd/system" / name).read_text()
        copy = installed / "verify" / name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(text.replace("/opt/qpsmtpd-py/", f"{installed}/opt/qpsmtpd-py/"))
        units.append(str(copy))
    # verify runs `man` for each man: link of Documentation=: it must find the installed
    # page (and not Debian's Perl qpsmtpd-prefork(8), say), so man's path is the scratch root's;
    # the links to them are absolute (test_every_documentation_link_of_the_units_is_installed)
    env = {**os.environ, "MANPATH": str(installed / "opt/qpsmtpd-py/share/man")}  # the links' targets
    result = subprocess.run([shutil.which("systemd-analyze"), "verify", *units],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_the_installed_config_is_our_own_and_checks_clean(installed):
    conf = installed / "etc" / "qpsmtpd-py"
    plugins = (conf / "plugins").read_text()
    assert "queue/maildir /var/lib/qpsmtpd-py/Maildir" in plugins
    assert (conf / "spool_dir").read_text().splitlines()[-1] == "/var/lib/qpsmtpd-py/spool"
    assert (conf / "store_dir").read_text().splitlines()[-1] == "/var/lib/qpsmtpd-py/store"   # writable there
    assert not (conf / "dns_servers").exists()        # the system's resolver
    assert not (installed / "etc" / "qpsmtpd").exists()
    tool = installed / "opt/qpsmtpd-py/bin/qpsmtpd-check-config"
    result = subprocess.run([str(tool), str(conf)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.readlink(installed / "usr/local/bin/qpsmtpd-admin") == "/opt/qpsmtpd-py/bin/qpsmtpd-admin"
    assert os.readlink(installed / "usr/local/bin/qpsmtpd-check-config") == \
        "/opt/qpsmtpd-py/bin/qpsmtpd-check-config"


def test_a_second_run_keeps_the_admins_config(installed):
    conf = installed / "etc" / "qpsmtpd-py" / "rcpthosts"
    conf.write_text("mail.example.org\n")
    unit = installed / "etc/systemd/system/qpsmtpd-prefork.service"
    before = unit.read_text()
    result = install(installed)
    assert result.returncode == 0, result.stderr
    assert "kept the existing config" in result.stderr
    assert conf.read_text() == "mail.example.org\n"
    assert unit.read_text() == before


def test_manual_text_that_looks_like_roff_is_shown_as_written(tmp_path):
    """A plugin manual is plain text: a line starting with '.' or "'", or a backslash,
    must print as written, not act as a roff request or escape (no checkout install)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "odd.py").write_text(
        '"""odd - a manual that looks like roff\n\n.TH not a request\n\'quoted line\n'
        'a backslash \\\\fB stays, -- too\n\n  .indented dot\n"""\n')
    from harness import BIN_DIR
    subprocess.run([os.path.join(BIN_DIR, "qpsmtpd-man"), "-q", "--plugin-dir", str(plugins),
                    str(tmp_path / "man")], check=True, timeout=60)
    text, warnings = render([tmp_path / "man/man7/qpsmtpd-plugin-odd.7"])
    assert warnings == ""
    for line in (".TH not a request", "'quoted line", "a backslash \\fB stays, -- too", ".indented dot"):
        assert line in text, text
