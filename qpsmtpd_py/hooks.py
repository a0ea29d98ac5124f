"""Hook names, their order, and the return-code semantics of running a chain."""

import re
import traceback
from time import monotonic as _monotonic

from .alarm import CallLimit, CallTimeout
from .constants import (DECLINED, DENY, DENY_CODES, DENY_DISCONNECT, DENYSOFT,
                        DENYSOFT_DISCONNECT, LOGCRIT, LOGERROR, OK, RETURN_NAMES)

HOOKS = (
    "pre-connection", "connect", "helo_parse", "ehlo_parse", "helo", "ehlo",
    "auth_parse", "auth", "auth-plain", "auth-login", "auth-cram-md5",
    "reset_transaction", "mail_parse", "mail_pre", "mail",
    "rcpt_parse", "rcpt_pre", "rcpt",
    "data", "data_headers_end", "data_post_headers", "received_line", "data_post",
    "queue_pre", "queue", "queue_post",
    "vrfy", "noop", "help", "unrecognized_command", "quit",
    "disconnect", "post-connection", "deny", "ok", "logging", "config", "user_config",
    "post-fork",
)
HOOK_SET = frozenset(HOOKS)

# Hooks whose result is not an SMTP reply: a plugin that raises there is logged and
# the chain goes on. Everywhere else a raise becomes a temporary failure.
NO_RESPOND_HOOKS = frozenset((
    "reset_transaction", "disconnect", "post-connection", "deny", "ok", "logging",
    "config", "user_config", "post-fork", "data_post_headers", "queue_post",
    "data_headers_end", "helo_parse", "ehlo_parse", "mail_parse", "rcpt_parse", "auth_parse",
))
_QUIET_HOOKS = frozenset(("logging", "deny", "ok", "config"))

INTERNAL_ERROR = "Internal error - try again later"


def method_name(hook):
    """'pre-connection' -> 'hook_pre_connection' (qpsmtpd's s/\\W/_/g)."""
    return "hook_" + re.sub(r"\W", "_", hook)


METHOD_TO_HOOK = {method_name(h): h for h in HOOKS}


def normalize(result):
    """A hook's return value -> (code, [message lines]); code None when invalid."""
    if isinstance(result, int):
        return result, []
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], int):
        messages = []
        for part in result[1:]:
            if part is None:
                continue
            if isinstance(part, (list, tuple)):
                messages.extend(str(p) for p in part)
            else:
                messages.append(str(part))
        return result[0], messages
    return None, []


class HookRunner:
    """The registered callbacks of every hook, in config order."""

    def __init__(self, log):
        self.log = log                       # log(level, msg, hook=, plugin=)
        self.registry = {hook: [] for hook in HOOKS}
        # seconds a plugin call may go without keepalive() (config plugin_timeout, set
        # by the app); then it is interrupted and counts as a failed plugin (4xx)
        self.call_limit = CallLimit(0)

    def add(self, hook, plugin, func, unshift=False):
        if hook not in HOOK_SET:
            raise ValueError(f"{plugin.plugin_name}: Invalid hook: {hook}")
        entry = (plugin, func)
        if unshift:
            self.registry[hook].insert(0, entry)
        else:
            self.registry[hook].append(entry)

    def has(self, hook):
        return bool(self.registry.get(hook))

    def run(self, hook, transaction, *args):
        """Run the chain; the first answer that is not DECLINED wins.

        Returns (code, messages, plugin). A plugin that raises is logged with its
        traceback; on hooks that answer the client this is a DENYSOFT, so nothing
        is accepted by accident. When every plugin declines, the messages are those
        of the last one, as in qpsmtpd (queue: `451 Unable to queue message (71)`).
        """
        declined_messages = []
        quiet = hook in _QUIET_HOOKS
        registry = self.registry
        # deny/ok hooks run after each call (qpsmtpd); most configs have none
        follows = not quiet and bool(registry["deny"] or registry["ok"])
        limit = self.call_limit
        # One timer for the whole chain: each call, and the deny/ok hooks after it,
        # starts with the whole limit again (the first call: start() just set it).
        # A nested chain (a hook run from inside a plugin call) runs under the outer
        # limit. CallLimit's again() and stop() are written out: a chain runs for most
        # commands, and in a busy server each Python call more costs a few cold
        # microseconds (bench/README.md, 2026-12-05, third session).
        limited = not quiet and limit.start()
        renew = False
        try:
            for plugin, func in registry[hook]:
                if renew:                            # limit.again()
                    if limit.active:
                        limit.renewed = _monotonic()
                    else:                            # a timeout ended the timer
                        limited = limit.start()
                renew = limited
                try:
                    result = func(transaction, *args)
                except CallTimeout as exc:
                    self.log(LOGERROR, f"plugin {plugin.plugin_name} in hook {hook} {exc} "
                             "(plugin_timeout): interrupted", hook=hook, plugin=plugin.plugin_name)
                    if hook in NO_RESPOND_HOOKS:
                        continue
                    code, messages = DENYSOFT, [INTERNAL_ERROR]
                except Exception:
                    self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{plugin.plugin_name}] in hook {hook}:\n"
                             + traceback.format_exc().rstrip(), hook=hook, plugin=plugin.plugin_name)
                    if hook in NO_RESPOND_HOOKS:
                        continue
                    code, messages = DENYSOFT, [INTERNAL_ERROR]
                else:
                    if type(result) is int:          # the usual DECLINED, OK ...
                        code, messages = result, []
                    else:
                        code, messages = normalize(result)
                    if code not in RETURN_NAMES:
                        if not quiet:
                            self.log(LOGERROR, f"Plugin {plugin.plugin_name}, hook {hook} returned "
                                     + ("undef!" if result is None else repr(result)),
                                     hook=hook, plugin=plugin.plugin_name)
                        continue
                if follows:
                    if limited:
                        limited = limit.again()
                    follow = "deny" if code in DENY_CODES else "ok"
                    if registry[follow]:
                        self._after_call(follow, transaction, plugin, code, messages)
                if code != DECLINED:
                    return code, messages, plugin
                declined_messages = messages
            return DECLINED, declined_messages, None
        finally:
            if limited:
                limit.active = False                 # limit.stop()

    def _after_call(self, follow, transaction, plugin, code, messages):
        """Run the `follow` hooks (deny or ok) after a plugin call, as qpsmtpd does."""
        text = " ".join(messages)
        for other, func in self.registry[follow]:
            try:
                func(transaction, plugin.plugin_name, code, text)
            except (Exception, CallTimeout):         # a deny hook that hung: go on
                self.log(LOGERROR, f"{follow} hook of {other.plugin_name} failed:\n"
                         + traceback.format_exc().rstrip(), hook=follow,
                         plugin=other.plugin_name)

    def run_parser(self, hook, transaction, verb, line, *args):
        """qpsmtpd's *_parse hooks (Qpsmtpd::Command): a plugin returns (OK, parser)
        to parse the command's arguments itself; parser(verb, line) returns
        (OK, value, ...) or (DENY, "message"). The first parser offered is used.

        Returns None when no plugin offers one (the core parses), else (True,
        [values]) or (False, [message]); a parser that raises is logged and gives
        (None, [INTERNAL_ERROR]) so the client gets a temporary failure."""
        for plugin, func in self.registry[hook]:
            try:
                result = func(transaction, *args)
            except Exception:
                self._crashed(plugin, hook)
                continue
            if isinstance(result, (tuple, list)) and len(result) == 2 and result[0] == OK \
                    and callable(result[1]):
                return self._parse_with(plugin, hook, result[1], verb, line)
            code = result[0] if isinstance(result, (tuple, list)) and result else result
            if code != DECLINED:
                self.log(LOGERROR, f"Plugin {plugin.plugin_name}, hook {hook} must return "
                         f"DECLINED or (OK, parser), not {result!r}", hook=hook,
                         plugin=plugin.plugin_name)
        return None

    def _parse_with(self, plugin, hook, parser, verb, line):
        try:
            code, values = normalize_parsed(parser(verb, line))
        except Exception:
            self._crashed(plugin, hook)
            return None, [INTERNAL_ERROR]
        if code == OK:
            return True, values
        return False, [str(v) for v in values[:1] if v]

    def _crashed(self, plugin, hook):
        self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{plugin.plugin_name}] in hook {hook}:\n"
                 + traceback.format_exc().rstrip(), hook=hook, plugin=plugin.plugin_name)


def normalize_parsed(result):
    """A parser's (OK, value, ...) / (DENY, message) / DENY -> (code, [values])."""
    if isinstance(result, int):
        return result, []
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], int):
        return result[0], list(result[1:])
    raise TypeError(f"a parser must return (OK, value, ...) or (DENY, message), not {result!r}")



# -- what the client is told -------------------------------------------------------------
# (hook, return code) -> (SMTP code, default text, disconnect after the reply).
# The default text is used when the plugin gave none; {fields} are filled in by the
# session (sender, kind, host). A result missing here is not a refusal: the session
# goes on (OK/DECLINED accept, DONE means the plugin answered itself).
def _refusals(hook, deny, soft, deny_disc=None, soft_disc=None):
    """The four DENY codes of one hook; *_disc default to the plain code + disconnect."""
    deny_disc = deny_disc or deny
    soft_disc = soft_disc or soft
    return {
        (hook, DENY): (deny[0], deny[1], False),
        (hook, DENYSOFT): (soft[0], soft[1], False),
        (hook, DENY_DISCONNECT): (deny_disc[0], deny_disc[1], True),
        (hook, DENYSOFT_DISCONNECT): (soft_disc[0], soft_disc[1], True),
    }


REPLIES = {}
for _hook, _args in (
    ("connect", ((550, "Connection from you denied, bye bye."),
                 (450, "Connection from you temporarily denied, bye bye."))),
    ("helo", ((550, "{kind} {host} refused"), (450, "{kind} {host} refused"))),
    ("ehlo", ((550, "{kind} {host} refused"), (450, "{kind} {host} refused"))),
    ("mail_pre", ((550, "Address refused"), (450, "Address refused"))),
    ("rcpt_pre", ((550, "Address refused"), (450, "Address refused"))),
    ("mail", ((550, "{sender}, denied"), (450, "{sender}, temporarily denied"),
              None, (421, "{sender}, temporarily denied"))),
    ("rcpt", ((550, "relaying denied"), (450, "relaying denied"),
              (550, "delivery denied"), (421, "relaying denied"))),
    ("unrecognized_command", ((500, "Unrecognized command"), (451, "Unrecognized command"),
                              (521, "Unrecognized command"), (421, "Unrecognized command"))),
    ("vrfy", ((554, "Access Denied"), (554, "Access Denied"))),
    ("help", ((500, "Syntax error, command not recognized"),
              (500, "Syntax error, command not recognized"))),
    ("data", ((554, "Message denied"), (451, "Message denied temporarily"),
              None, (421, "Message denied temporarily"))),
    ("data_headers_end", ((554, "Message denied"), (421, "Message denied temporarily"))),
    ("data_post", ((552, "Message denied"), (452, "Message denied temporarily"))),
    ("queue_pre", ((552, "Message denied"), (452, "Message denied"))),
    ("queue", ((552, "Message denied"), (452, "Message denied temporarily"))),
):
    REPLIES.update(_refusals(_hook, *_args))
# hooks whose DENY/DENYSOFT keep the session but whose disconnect codes differ
REPLIES[("noop", DENY)] = (500, "Stop wasting my time.", False)
REPLIES[("noop", DENY_DISCONNECT)] = (500, "Stop wasting my time.", True)
# queue_pre never disconnects; data_headers_end refuses only with its disconnect codes
REPLIES[("queue_pre", DENY_DISCONNECT)] = (552, "Message denied", False)
REPLIES[("queue_pre", DENYSOFT_DISCONNECT)] = (452, "Message denied", False)
del REPLIES[("data_headers_end", DENY)], REPLIES[("data_headers_end", DENYSOFT)]
# answers that are not refusals
REPLIES[("rcpt", DECLINED)] = (450, "No plugin decided if relaying is allowed", False)
REPLIES[("queue", DECLINED)] = (451, "Queuing declined or disabled; try again later", False)


def reply_for(hook, code):
    """(SMTP code, default text, disconnect) for a chain's result, or None."""
    return REPLIES.get((hook, code))
