"""Command-line scanners (clamscan, dspam, sb_filter, the vendor virus scanners) and
what every content scanner plugin shares: the time-out and failure-policy
arguments, the temporary message file, and "accept, but say it was not scanned".

    clamscan = ScanProgram("/usr/bin/clamscan", timeout=60, failure="tempfail")
    with message_file(transaction) as path:            # removed afterwards, always
        try:
            result = clamscan.run(["--stdout", "--no-summary", path], keepalive=self.keepalive)
        except ProgramError as exc:                     # not started, deadline, killed
            return scan_failed(self, transaction, clamscan, exc)
    result.status, result.output                        # exit code, stdout+stderr text

Why one place:
  * an argument list, never a shell: nothing in a file name or a setting is
    ever interpreted;
  * one deadline for the whole run: at the deadline the program's whole process
    group is killed (a wrapper script's children too) and ProgramError raised,
    so a hanging scanner costs at most its time-out;
  * at most `output_limit` bytes of output are kept;
  * a program killed by a signal is a failure, never a clean scan;
  * the failure policy is Scanner's: `tempfail` (4xx, the default) or `accept`
    (deliver, tagged with an `X-Scan-Failed` header field by scan_failed()).
"""

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time

from ..arguments import Choice, Keyword, Number
from ..constants import DECLINED, DENY, DENYSOFT, LOGERROR, LOGWARN
from .scanner import FAILURE_POLICIES

OUTPUT_LIMIT = 1 << 20


class ProgramError(Exception):
    """The scanner program could not give an answer (not started, time-out, killed)."""


class ProgramResult:
    """What a finished program gave: exit `status` (0..255) and its `output` (text,
    stdout and stderr together, at most output_limit bytes)."""

    def __init__(self, status, output):
        self.status = status
        self.output = output

    @property
    def lines(self):
        return self.output.splitlines()

    def __repr__(self):
        return f"ProgramResult({self.status}, {self.output[:80]!r})"


def scan_arguments(timeout, failure="tempfail", what="the scanner"):
    """The `timeout` and `failure` arguments every scanner plugin declares."""
    return (
        Keyword("timeout", Number(min=0.1, max=3600, unit="seconds"), timeout,
                f"the most one scan may take, from connecting to {what} to its answer"),
        Keyword("failure", Choice(*FAILURE_POLICIES), failure,
                f"when {what} fails or times out: tempfail (4xx, the sender retries) or "
                "accept (deliver unscanned, with an X-Scan-Failed header field)"),
    )


class ScanProgram:
    """A scanner program: where it is and how to treat it. Holds no process between
    runs, so one object made in register() serves every worker."""

    def __init__(self, path, timeout=60.0, failure="tempfail", name=None,
                 output_limit=OUTPUT_LIMIT):
        self.path = str(path)
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise ValueError(f"{name or path}: timeout must be more than 0 seconds")
        self.failure = str(failure).lower()
        if self.failure not in FAILURE_POLICIES:
            raise ValueError(f"{name or path}: failure policy must be one of "
                             f"{', '.join(FAILURE_POLICIES)}, not '{failure}'")
        self.name = name or os.path.basename(self.path)
        self.output_limit = output_limit

    @classmethod
    def from_arguments(cls, args, key, name, failure=None):
        """The program at the path of argument `key`, with the plugin's `timeout`
        and `failure` arguments (scan_arguments); `failure` overrides the latter."""
        return cls(args[key], timeout=args["timeout"], failure=failure or args["failure"],
                   name=name)

    def __str__(self):
        return f"{self.name} ({self.path})"

    def scan_message(self, transaction, options, keepalive=None, **file_options):
        """Run the program as `PATH *options MESSAGE_FILE` on the message written to
        a temporary file (message_file(transaction, **file_options)). Raises
        ProgramError as run() does, OSError when the file cannot be written."""
        with message_file(transaction, **file_options) as path:
            return self.run([*options, path], keepalive=keepalive)

    def exit_error(self, result):
        """The ProgramError for an exit code that is neither clean nor a verdict."""
        output = " ".join(result.output.split())[:200]
        return ProgramError(f"{self}: exit code {result.status}: {output}")

    def run(self, args, keepalive=None, stdin=None):
        """Run the program with `args` (a list) and wait for it, within `timeout`.
        `stdin`: a path fed to its standard input (else /dev/null). Returns a
        ProgramResult; raises ProgramError when it cannot start, passes the deadline
        (its process group is killed) or dies of a signal."""
        deadline = time.monotonic() + self.timeout
        argv = [self.path, *[str(a) for a in args]]
        try:
            infile = open(stdin, "rb") if stdin else subprocess.DEVNULL
        except OSError as exc:
            raise ProgramError(f"{self}: cannot read {stdin}: {exc.strerror}") from exc
        try:
            proc = subprocess.Popen(argv, stdin=infile, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True)
        except OSError as exc:
            raise ProgramError(f"{self}: cannot run: {exc.strerror or exc}") from exc
        finally:
            if stdin:
                infile.close()
        try:
            output = self._read(proc, deadline, keepalive)
            try:
                status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise ProgramError(f"{self}: no answer within {self.timeout:g}s") from None
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                _kill_group(proc)
        if status < 0:
            raise ProgramError(f"{self}: killed by signal {-status}")
        return ProgramResult(status, output.decode("utf-8", "replace"))

    def _read(self, proc, deadline, keepalive):
        out = bytearray()
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProgramError(f"{self}: no answer within {self.timeout:g}s")
                ready = sel.select(min(remaining, 1.0))
                if keepalive is not None:
                    keepalive()
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return bytes(out)
                if len(out) < self.output_limit:
                    out += chunk[:self.output_limit - len(out)]

    def failed(self, plugin, exc, message="Unable to scan the message, try again later"):
        """As Scanner.failed: (DENYSOFT, message) under tempfail, DECLINED under accept."""
        return _policy(self.failure, plugin, exc, message)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def _policy(failure, plugin, exc, message):
    if failure == "accept":
        plugin.log(LOGWARN, f"error, {exc}; accepting the message unscanned (failure accept)")
        return DECLINED
    plugin.log(LOGERROR, f"error, {exc}")
    return DENYSOFT, message


def scan_failed(plugin, transaction, client, exc, message=None):
    """The failure policy of `client` (a Scanner or ScanProgram) for `exc`; when it
    accepts, the message is tagged `X-Scan-Failed: <plugin>: <reason>` so the
    recipient (and later filters) can tell it went through unscanned."""
    result = client.failed(plugin, exc) if message is None else client.failed(plugin, exc, message)
    if result == DECLINED and transaction is not None and transaction.header is not None:
        reason = " ".join(str(exc).split())[:200]
        transaction.header.add("X-Scan-Failed", f"{plugin.plugin_name}: {reason}", prepend=True)
    return result


def virus_found(transaction, names, deny, reply="Virus Found"):
    """The verdict on infected mail: (DENY, "<reply>: NAMES") when `deny`, else the
    mail goes on tagged `X-Virus-Found: Yes` and `X-Virus-Details: NAMES`."""
    if deny:
        return DENY, f"{reply}: {names}"
    transaction.header.add("X-Virus-Found", "Yes")
    transaction.header.add("X-Virus-Details", names)
    return DECLINED


def spool_file_mode(directory):
    """qpsmtpd's rule for a file a scanner under another user must read: the
    spool dir's group/other execute bits grant read on the file."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return 0o600
    return 0o600 | (0o040 if mode & 0o010 else 0) | (0o004 if mode & 0o001 else 0)


@contextlib.contextmanager
def message_file(transaction, directory=None, prefix=b"", crlf=False):
    """A temporary file holding the whole message (header, blank line, body; LF
    line ends unless crlf), `prefix` bytes first (an mbox "From " line, an
    X-Envelope-From field); yields its path and removes it afterwards, whatever
    happened. The file is written in chunks: a big message is never in memory."""
    directory = directory or transaction.spool_dir or None
    fd, path = tempfile.mkstemp(prefix="qpsmtpd-scan-", suffix=".eml", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            if prefix:
                fh.write(prefix)
            transaction.write_message(fh, crlf=crlf)
        os.chmod(path, spool_file_mode(os.path.dirname(path)))
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
