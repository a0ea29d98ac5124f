"""`qpsmtpd-man DIR`: write the manual pages (roff) of qpsmtpd_py into DIR/manN.

Made from what the program already says, so a page cannot drift from the code:

  man8  qpsmtpd, qpsmtpd-forkserver, qpsmtpd-prefork   the servers' argparse parsers
  man1  qpsmtpd-doc, qpsmtpd-check-config, ...          every other console script's
  man5  qpsmtpd-config                                   the config directory
  man7  qpsmtpd-plugins (the index) and one qpsmtpd-plugin-NAME per plugin
        (NAME with '/' as '-': queue/maildir is qpsmtpd-plugin-queue-maildir),
        from the manual `qpsmtpd-doc NAME` prints

The console scripts are the package's entry points; each one's parser is caught
when its main() asks it to parse (nothing else of main runs). scripts/install runs
this into PREFIX/share/man, where `man` finds it (man-db maps PREFIX/bin on the
PATH to PREFIX/share/man).
"""

import argparse
import datetime
import importlib.metadata
import os
import re
import sys

from .. import __version__
from ..plugin import PluginLoader, default_plugin_dirs
from .doc import all_plugins, arguments_text, plugin_doc

DIST = "qpsmtpd_py"
SERVER_MODULES = "qpsmtpd_py.server."        # their scripts are section 8
DOCDIR = "/usr/share/doc/qpsmtpd-py"


# -- roff -------------------------------------------------------------------------------------
def esc(text):
    """Text safe in roff: backslashes escaped, no line starting as a request."""
    text = str(text).replace("\\", "\\e")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def opt(text):
    """An option or command word: bold, its hyphens real minus signs (copy-pastable)."""
    return r"\fB" + esc(text).replace("-", r"\-") + r"\fR"


def head(name, section, summary):
    """.TH and NAME; the date is SOURCE_DATE_EPOCH's when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = datetime.date.fromtimestamp(int(epoch)) if epoch else datetime.date.today()
    return [f'.TH "{name.upper()}" "{section}" "{date:%Y-%m-%d}" "qpsmtpd_py {__version__}" '
            '"qpsmtpd_py manual"', ".SH NAME", f"{esc(name)} \\- {esc(summary_line(summary))}"]


def summary_line(text):
    return text.strip().split("\n", 1)[0].rstrip(".")


def text_to_roff(text):
    """Plain manual text (plugin docstrings, epilogs): blank lines part paragraphs,
    indented lines are kept as they are (examples, tables, config lines)."""
    out, fill = [], None
    for line in text.rstrip().split("\n"):
        if not line.strip():
            if fill is False:
                out += [".fi", ".RE"]
            fill = None
            continue
        indented = line[:1] in (" ", "\t")
        if indented and fill is not False:
            out += [".PP"] if fill is None else []
            out += [".RS 4", ".nf"]
            fill = False
        elif not indented and fill is not True:
            if fill is False:
                out += [".fi", ".RE"]
            out.append(".PP")
            fill = True
        out.append(esc(dedent_one(line) if indented else line.strip()))
    if fill is False:
        out += [".fi", ".RE"]
    return out


def dedent_one(line):
    """An indented line keeps its indentation past the first two columns (alignment)."""
    return line[2:] if line.startswith("  ") else line.lstrip("\t")


def see_also(*refs):
    return [".SH SEE ALSO", ",\n".join(f".BR {name} ({section})" for name, section in refs)]


# -- console scripts ---------------------------------------------------------------------------
class _Caught(BaseException):
    """Raised from parse_known_args to stop a main() at its parser (BaseException: a
    main's `except Exception` does not swallow it)."""

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def parser_of(func, prog):
    """The ArgumentParser `func` (a console script's main) builds, caught when it
    parses; sys.argv is [prog, --help] meanwhile (nothing is parsed)."""
    original, saved_argv = argparse.ArgumentParser.parse_known_args, sys.argv

    def catch(self, args=None, namespace=None):
        raise _Caught(self)

    argparse.ArgumentParser.parse_known_args = catch
    sys.argv = [prog, "--help"]
    try:
        func()
    except _Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
        sys.argv = saved_argv
    raise ValueError(f"{prog}: its entry point parsed no arguments")


def console_scripts():
    """[(name, section, entry point)] of this distribution, sorted by name."""
    scripts = [ep for ep in importlib.metadata.distribution(DIST).entry_points
               if ep.group == "console_scripts"]
    return sorted((ep.name, 8 if ep.value.startswith(SERVER_MODULES) else 1, ep) for ep in scripts)


def invocation(formatter, action):
    if not action.option_strings:
        return r"\fI" + esc(formatter._format_args(action, formatter._get_default_metavar_for_positional(action))) + r"\fR"
    words = ", ".join(opt(o) for o in action.option_strings)
    if action.nargs != 0:
        metavar = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
        words += r" \fI" + esc(metavar) + r"\fR"
    return words


def usage_of(parser):
    """argparse's usage without 'usage: ', continuation lines aligned under the name."""
    lines = parser.format_usage().strip().split("\n")
    if lines[0].startswith("usage: "):
        lines = [lines[0][7:]] + [line[7:] if line.startswith(" " * 7) else line for line in lines[1:]]
    return [".nf"] + [esc(line) for line in lines] + [".fi"]


def options_roff(parser, headings=True):
    """.TP items for `parser`'s arguments (under a .SS per group with `headings`), and
    for a parser with sub-commands a COMMANDS section: each command's synopsis,
    description and options."""
    formatter = parser._get_formatter()
    out, commands = [], None
    headings = headings and sum(1 for g in parser._action_groups if any(
        a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
        for a in g._group_actions)) > 1
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS
                   and not isinstance(a, argparse._SubParsersAction)
                   and (headings or not isinstance(a, argparse._HelpAction))]
        commands = commands or next((a for a in group._group_actions
                                     if isinstance(a, argparse._SubParsersAction)), None)
        if not actions:
            continue
        if headings:
            title = group.title or "options"
            out.append(f".SS {esc(title[:1].upper() + title[1:])}")
            if group.description:
                out += text_to_roff(group.description)
        for action in actions:
            out += [".TP", invocation(formatter, action),
                    esc(formatter._expand_help(action)) if action.help else ""]
    if commands is not None:
        out += [".SH COMMANDS"]
        helps = {choice.dest: choice.help or "" for choice in commands._choices_actions}
        for name, sub in commands.choices.items():
            out += [f".SS {esc(name)}"] + usage_of(sub)
            out += text_to_roff(sub.description or helps.get(name, ""))
            out += options_roff(sub, headings=False)
    return out


def script_page(name, section, parser):
    """A console script's page: synopsis, description, options, epilog."""
    description = (parser.description or "").strip()
    title = " ".join(description.partition("\n\n")[0].split()) or name
    out = head(name, section, title)
    out += [".SH SYNOPSIS"] + usage_of(parser) + [".SH DESCRIPTION"]
    out += text_to_roff(description or title)
    out += [".SH OPTIONS"] + options_roff(parser)
    if parser.epilog:
        out += [".SH NOTES"] + text_to_roff(parser.epilog)
    refs = [("qpsmtpd-config", 5), ("qpsmtpd-plugins", 7)]
    if section == 8:
        out += [".SH FILES", ".TP", r"\fI/etc/qpsmtpd-py\fR",
                "the config directory of an installed server (QPSMTPD_CONFIG in the units; "
                "see qpsmtpd-config(5))",
                ".TP", rf"\fI{DOCDIR}/servers.md\fR",
                "signals, systemd units, liveness, exit status and the differences from qpsmtpd"]
    out += see_also(*[r for r in refs + [("qpsmtpd-doc", 1)] if r[0] != name])
    return out


# -- plugins -----------------------------------------------------------------------------------
def plugin_page_name(plugin):
    return "qpsmtpd-plugin-" + plugin.replace("/", "-")


def plugin_page(plugin, path, loader):
    text = plugin_doc(path)
    first, _, body = text.partition("\n")
    summary = first.split(" - ", 1)[-1] if " - " in first else first
    out = head(plugin_page_name(plugin), 7, summary)
    out += [".SH SYNOPSIS", "In the config directory's \\fIplugins\\fR file:", ".PP", ".RS 4", ".nf",
            esc(plugin), ".fi", ".RE", ".SH DESCRIPTION"]
    out += text_to_roff(body.strip("\n") or summary)
    out += [".SH ARGUMENTS"] + text_to_roff("\n".join(arguments_text(loader, plugin)))
    out += see_also(("qpsmtpd-plugins", 7), ("qpsmtpd-config", 5), ("qpsmtpd-doc", 1))
    return out


def plugins_index(plugins):
    out = head("qpsmtpd-plugins", 7, "the plugins of qpsmtpd_py")
    out += [".SH DESCRIPTION", ".PP",
            "Each line of the config directory's \\fIplugins\\fR file loads one plugin, with its "
            "arguments; the hooks run in the order of the lines. Every plugin has its page, "
            "named after it with '/' as '\\-' (\\fBman qpsmtpd\\-plugin\\-queue\\-maildir\\fR), "
            "and `qpsmtpd\\-doc NAME` prints the same manual.", ".SH PLUGINS"]
    for plugin, path in plugins.items():
        first = plugin_doc(path).split("\n", 1)[0]
        out += [".TP", opt(plugin), esc(first.split(" - ", 1)[-1]) + f" ({esc(plugin_page_name(plugin))}(7))"]
    out += see_also(("qpsmtpd-config", 5), ("qpsmtpd-doc", 1), ("qpsmtpd-check-config", 1))
    return out


# -- the config directory ----------------------------------------------------------------------
CONFIG_FILES = [
    ("plugins", "one plugin a line, with its arguments, in the order their hooks run "
                "(qpsmtpd-plugins(7)); required"),
    ("me", "this host's name: the greeting, Received: headers, mail to it is local "
           "(default: the host name)"),
    ("loglevel", "0 (emergencies) to 7 (debug), or LOGINFO ...; default 5 (LOGNOTICE): the "
                 "listening line, every refusal and one summary line per transaction and connection"),
    ("logging", "logging plugins (logging/file, logging/syslog ...), loaded before the others; "
                "without one, lines go to stderr (the journal under systemd)"),
    ("plugin_dirs", "directories to find plugins in, instead of the installed ones"),
    ("spool_dir", "where message bodies are spooled while they are received (relative paths "
                  "are taken from the config directory)"),
    ("timeout", "seconds a client may stay silent (default 1200); timeoutsmtpd overrides it"),
    ("databytes", "largest message in bytes, advertised as SIZE (0 or no file: unlimited)"),
    ("size_threshold", "bytes of a message kept in memory before it is spooled to disk (10000)"),
    ("bare_newlines", "reject (default) or normalize a message line ending in a bare LF or CR"),
    ("data_line_limit", "longest line of a message in bytes (0: no limit)"),
    ("max_recipients", "recipients per transaction (default 1000)"),
    ("plugin_timeout", "seconds a plugin call may go without progress before a 451 (default: timeout)"),
    ("smtpgreeting", "the text of the 220 greeting"),
    ("auth_max_failures", "failed AUTH attempts before the connection is closed (default 3)"),
    ("auth_failure_delay, auth_failure_delay_max", "seconds the reply to a refused password "
                                                   "waits, doubling (defaults 1 and 4)"),
    ("auth_max_failures_ip, auth_failure_window", "refused passwords one client IP may have "
                                                  "in the store within the window before AUTH "
                                                  "gets 421 without a try (defaults 10 and 900 s)"),
    ("junk_command_limit, hard_error_limit, max_session_time, min_data_rate, stress_timeout",
     "limits on clients that hold a worker without sending mail, and their values under "
     "stress (FRONT AND STRESS in " + DOCDIR + "/servers.md)"),
    ("front_max_per_ip", "connections one client IP may have waiting in qpsmtpd-prefork's "
                         "front; more get 421 (default 50, loopback exempt, 0: no cap)"),
    ("dns_servers", "ip[:port] a line: the resolvers to ask (default: /etc/resolv.conf)"),
    ("dns_timeout", "seconds a DNS lookup may take (default 5)"),
    ("store_dir", "the LMDB store of greylisting, karma, token buckets (default "
                  "/var/lib/qpsmtpd/store; an installed config sets /var/lib/qpsmtpd-py/store)"),
    ("store_map_size, store_max_size, store_sync", "the LMDB store's sizes and fsync policy"),
    ("store_backend", "lmdb (default) or redis; then store_redis, store_redis_prefix, "
                      "store_redis_timeout, store_redis_ttl"),
]


def config_page():
    out = head("qpsmtpd-config", 5, "the config directory of qpsmtpd_py")
    out += [".SH SYNOPSIS", r"\fI/etc/qpsmtpd\-py/\fR (QPSMTPD_CONFIG)", ".SH DESCRIPTION"]
    out += text_to_roff(
        "A config directory holds one small file per setting, as qpsmtpd's does, and a "
        "Perl qpsmtpd directory works as it is (qpsmtpd-check-config DIR says which lines "
        "need attention). A name is looked up in $QPSMTPD_CONFIG, then ./config, then "
        "$QMAIL/control (QMAIL defaults to /var/qmail).\n\n"
        "Lines starting with # and blank lines are ignored; '$include FILE' reads FILE (or "
        "every file of a directory) in its place; NAME.cdb is read for maps. A changed "
        "file is noticed within a second; SIGHUP reloads the plugins.")
    out += [".SH FILES"]
    for name, meaning in CONFIG_FILES:
        out += [".TP", r"\fI" + esc(name) + r"\fR", esc(meaning)]
    out += [".PP", "Plugins read their own files (rcpthosts, badmailfrom, hosts_allow ...): each "
            "plugin's page names them."]
    out += see_also(("qpsmtpd-check-config", 1), ("qpsmtpd-plugins", 7), ("qpsmtpd-prefork", 8),
                    ("qpsmtpd-forkserver", 8), ("qpsmtpd", 8))
    return out


# -- writing -----------------------------------------------------------------------------------
def all_pages(plugin_dirs=None):
    """{(name, section): [roff lines]} of every page."""
    pages = {}
    for name, section, entry_point in console_scripts():
        pages[(name, section)] = script_page(name, section, parser_of(entry_point.load(), name))
    dirs = plugin_dirs or default_plugin_dirs()
    loader = PluginLoader(dirs)
    plugins = all_plugins(dirs)
    for plugin, path in plugins.items():
        key = (plugin_page_name(plugin), 7)
        if key in pages:
            raise ValueError(f"two plugins make the page {key[0]}(7)")
        pages[key] = plugin_page(plugin, path, loader)
    pages[("qpsmtpd-plugins", 7)] = plugins_index(plugins)
    pages[("qpsmtpd-config", 5)] = config_page()
    return pages


def write_pages(pages, out_dir):
    written = []
    for (name, section), lines in sorted(pages.items()):
        directory = os.path.join(out_dir, f"man{section}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{name}.{section}")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-man",
        description="Write the manual pages of qpsmtpd_py (the servers, the tools, the config "
                    "directory and every plugin) as roff into DIR/man1, man5, man7 and man8.",
        epilog="scripts/install runs it into the install prefix's share/man. The pages are made "
               "from the programs' own --help and the plugins' manuals (qpsmtpd-doc).")
    parser.add_argument("directory", metavar="DIR", help="where to write, e.g. /opt/qpsmtpd-py/share/man")
    parser.add_argument("--plugin-dir", action="append", metavar="DIR",
                        help="document the plugins in DIR instead of the installed ones (repeatable)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    written = write_pages(all_pages(args.plugin_dir), args.directory)
    if not args.quiet:
        print(f"qpsmtpd-man: {len(written)} pages in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
