"""http_config - config values from a web server, falling back to the config files.

For a config name (rcpthosts, badmailfrom, databytes ...) the plugin GETs
<URL><name> from each URL prefix in turn; the first answer with a line in it wins
and replaces the file. The answer is split into lines; blank lines and lines
starting with # are dropped. 404 (or an empty answer) means "not set here": the
next prefix is asked, and when none has it the config file is used.

Answers are kept for `cache` seconds in each server process. When the web server
cannot be reached (refused, time-out, a 5xx answer) the last answer is used even
if older, and without one the config file is; after a failure the server is not
asked again for `retry` seconds, so an outage costs one time-out, not one per
config lookup. Never asked: me, logging, loglevel, plugin_dirs, plugins.

Arguments:  URL [URL ...] [cache S] [timeout S] [retry S]
  URL        prefixes, e.g. http://config.example.com/qpsmtpd/ (the name is appended)
  cache S    seconds an answer is used without asking again, default 300 (0: ask
             every time, still the fall-back when the server is down)
  timeout S  seconds for each request, default 5
  retry S    seconds to wait after a failure before asking again, default 30
Hooks: config.  Example:
  http_config http://10.0.0.9/qp-config/ cache 60

Differences from qpsmtpd: the cache, the time-outs and the fall-back (qpsmtpd asked on
every lookup and, with the server down, each lookup waited for LWP's time-out).
"""

import http.client
import urllib.error
import urllib.parse
import urllib.request

from qpsmtpd_py.api import (
    DECLINED, LOGINFO, LOGWARN, OK, Checked, Keyword, Number, Plugin, Positional,
)


def _check_url(text):
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"'{text}' is not an http:// or https:// URL")
    return text


class Unreachable(Exception):
    pass


class HTTPConfig(Plugin):
    arguments = (
        Positional("URL", Checked(_check_url, "an http:// or https:// URL prefix", "URL"), (),
                   "URL prefixes the config name is appended to", many=True, required=True),
        Keyword("cache", Number(min=0, unit="seconds"), 300.0, "how long an answer is used"),
        Keyword("timeout", Number(min=0.1, max=300, unit="seconds"), 5.0, "for each request"),
        Keyword("retry", Number(min=0, unit="seconds"), 30.0,
                "after a failure, how long to use the cache or files without asking"),
    )

    def register(self, *args):
        self.urls = list(self.args["URL"])
        self.ttl = self.args["cache"]
        self.timeout = self.args["timeout"]
        self.retry = self.args["retry"]
        self.cache = {}              # name -> (fetched at, lines or None)
        self.down_until = 0.0

    def hook_config(self, transaction, name):
        now = self.app.clock.time()
        cached = self.cache.get(name)
        if cached and now - cached[0] < self.ttl:
            return self.answer(cached[1])
        if now < self.down_until:
            return self.answer(cached[1] if cached else None)
        try:
            lines = self.fetch(name)
        except Unreachable as exc:
            self.down_until = now + self.retry
            fallback = "the last answer" if cached and cached[1] else "the config file"
            self.log(LOGWARN, f"error, {exc}; using {fallback} for {name} "
                              f"(not asking again for {self.retry:g} s)")
            return self.answer(cached[1] if cached else None)
        self.cache[name] = (now, lines)
        return self.answer(lines)

    @staticmethod
    def answer(lines):
        return (OK, *lines) if lines else DECLINED

    def fetch(self, name):
        """The first prefix's non-empty answer (lines), or None when none has one."""
        for prefix in self.urls:
            url = prefix + urllib.parse.quote(name)
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response:
                    text = response.read(1 << 20).decode("utf-8", "replace")
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise Unreachable(f"{url} answered {exc.code}") from None
                continue                     # 404 and the like: not set there
            except (OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise Unreachable(f"{url}: {reason}") from None
            lines = [line.strip() for line in text.splitlines()]
            lines = [line for line in lines if line and not line.startswith("#")]
            if lines:
                self.log(LOGINFO, f"pass, {name} from {url}")
                return lines
        return None
