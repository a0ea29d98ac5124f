"""t_args - test plugin with declared arguments of every kind; at RCPT it answers
`550 args: name=value ...` so a test can see what the loader parsed."""

from qpsmtpd_py.api import (REJECT_TYPE, AnyKeyword, Bool, Choice, DENY, Domains, Flag, Int,
                            Keyword, LogLevel, Number, Path, Plugin, Positional, Text)


class TArgs(Plugin):
    arguments = (
        Positional("dir", Path(), None, "a directory", required=True),
        Positional("count", Int(min=1, max=9), 3, "a small number"),
        Keyword("wait", Number(min=0, max=300, unit="seconds"), 1.0, "how long",
                aliases=("delay",)),
        Keyword("only", Bool(), False, "a switch"),
        Keyword("mode", Choice("fast", "slow", aliases={"quick": "fast"}), "slow", "speed"),
        Keyword("stage", Choice("CONNECT", "DATA"), ["CONNECT"], "when", repeat=True),
        Keyword("level", LogLevel(), None, "a level"),
        Keyword("domains", Domains(), frozenset(), "domains"),
        Keyword("name", Text(r"[a-z]+", "lower-case letters"), "x", "a name"),
        REJECT_TYPE.but(default="temp"),
        Flag("verbose", "say more"),
        AnyKeyword("CMD", Text(), "per-command value", key=r"cmd_\w+"),
    )

    def hook_rcpt(self, transaction, rcpt, params=None):
        shown = " ".join(f"{k}={_show(v)}" for k, v in sorted(self.args.items()))
        return DENY, f"args: {shown}"


def _show(value):
    if isinstance(value, (set, frozenset)):
        return ",".join(sorted(value))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
    return str(value)
