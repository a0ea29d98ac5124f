"""Hook names, their order, and the return-code semantics of running a chain."""

import re
import traceback

from .constants import DECLINED, DENY_CODES, DENYSOFT, LOGCRIT, LOGERROR, RETURN_NAMES

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
        for plugin, func in self.registry[hook]:
            try:
                result = func(transaction, *args)
            except Exception:
                self.log(LOGCRIT, f"FATAL PLUGIN ERROR [{plugin.plugin_name}] in hook {hook}:\n"
                         + traceback.format_exc().rstrip(), hook=hook, plugin=plugin.plugin_name)
                if hook in NO_RESPOND_HOOKS:
                    continue
                code, messages = DENYSOFT, [INTERNAL_ERROR]
            else:
                code, messages = normalize(result)
                if code is None or code not in RETURN_NAMES:
                    if hook not in _QUIET_HOOKS:
                        self.log(LOGERROR, f"Plugin {plugin.plugin_name}, hook {hook} returned "
                                 + ("undef!" if result is None else repr(result)),
                                 hook=hook, plugin=plugin.plugin_name)
                    continue
            if hook not in _QUIET_HOOKS:
                self._after_call(transaction, plugin, code, messages)
            if code != DECLINED:
                return code, messages, plugin
            declined_messages = messages
        return DECLINED, declined_messages, None

    def _after_call(self, transaction, plugin, code, messages):
        """Run the deny or ok hooks after each plugin call, as qpsmtpd does."""
        follow = "deny" if code in DENY_CODES else "ok"
        if self.registry[follow]:
            text = " ".join(messages)
            for other, func in self.registry[follow]:
                try:
                    func(transaction, plugin.plugin_name, code, text)
                except Exception:
                    self.log(LOGERROR, f"{follow} hook of {other.plugin_name} failed:\n"
                             + traceback.format_exc().rstrip(), hook=follow,
                             plugin=other.plugin_name)

