"""A private Dovecot with TLS (STARTTLS on one port, imaps on another), for the
auth_imap TLS tests: the shared test Dovecot (t/services) runs with ssl = no.

    with DovecotTLS(certs_dir, {"user@dom": "password"}) as imap:
        imap.port, imap.imaps_port
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import free_port

CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = dovecot-qptls-{tag}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{certs}/qpsmtpd-server.crt
ssl_key = <{certs}/qpsmtpd-server.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = {dir}/dovecot.log
mail_location = maildir:{dir}/mail/%d/%n/Maildir
first_valid_uid = 8
first_valid_gid = 8
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
"""


class DovecotTLS:
    def __init__(self, certs, users):
        self.dir = tempfile.mkdtemp(prefix="qptls")     # short: unix socket paths < 108 bytes
        os.chmod(self.dir, 0o755)                       # dovecot's login processes drop privileges
        self.port, self.imaps_port = free_port(), free_port()
        self.certs = os.path.join(self.dir, "certs")
        shutil.copytree(certs, self.certs)
        with open(os.path.join(self.dir, "passwd"), "w") as fh:
            for user, password in users.items():
                fh.write(f"{user}:{{PLAIN}}{password}::::::\n")
        os.makedirs(os.path.join(self.dir, "mail"))
        shutil.chown(os.path.join(self.dir, "mail"), "mail", "mail")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as fh:
            fh.write(CONFIG.format(dir=self.dir, certs=self.certs, port=self.port,
                                   imaps_port=self.imaps_port, tag=os.path.basename(self.dir)))
        self.pid = None

    def __enter__(self):
        with open(os.path.join(self.dir, "dovecot.out"), "wb") as out:   # it daemonizes:
            subprocess.run(["dovecot", "-c", self.conf], check=True, timeout=30,  # no pipes
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        pidfile = os.path.join(self.dir, "run", "master.pid")
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with open(pidfile) as fh:
                    self.pid = int(fh.read().strip())
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except (OSError, ValueError):
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"private dovecot did not start; see {self.dir}/dovecot.log")

    def __exit__(self, *exc):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + 10
            while time.time() < deadline and _running(self.pid):
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
