"""charset - accept or refuse messages by the charset of their Content-Type.

The message's (top) Content-Type header field is parsed; its `charset` parameter,
lower-cased with `_` read as `-`, is looked up in config/charsets. Each line there:

  NAME  CODE  [message]

NAME is a charset (normalised the same way), CODE a return code name (DENY,
DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT; OK, DECLINED and DONE let the
message pass). A refusal answers `<message or "Content-Type denied"> (#5.6.1)`, or
`(#4.6.1)` for the temporary codes, as qpsmtpd's DSN media_unsupported did. Never
deny us-ascii: it is what a message without a charset is.
The parsed Content-Type is left in the transaction note `Content-Type`
({'type': 'text', 'subtype': 'plain', 'params': {...}}). Unknown code names in the
file are logged and ignored.

No arguments (but loglevel). Hooks: data_post.
Example config/charsets:
  iso-2022-jp   DENY  Charset iso-2022-jp not accepted here
  ks_c_5601-1987 DENYSOFT
"""

from qpsmtpd_py.api import (
    DECLINED, DONE, LOGERROR, LOGINFO, OK, Plugin, content_type, is_soft, return_code,
)


def normalise(name):
    return name.strip().lower().replace("_", "-")


class Charset(Plugin):
    arguments = ()

    def compile(self, lines):
        table = {}
        for line in lines:
            words = line.split(None, 2)
            if len(words) < 2:
                self.log(LOGERROR, f"{line.origin}: expected 'charset CODE [message]'")
                continue
            code = return_code(words[1].upper())
            if code is None:
                self.log(LOGERROR, f"{line.origin}: unknown return code {words[1]}")
                continue
            table[normalise(words[0])] = (code, words[2].strip() if len(words) > 2 else "")
        return table

    def hook_data_post(self, transaction):
        value = transaction.header.get("Content-Type") if transaction.header else None
        mime, params = content_type(value)
        major, _, minor = mime.partition("/")
        transaction.notes["Content-Type"] = {"type": major, "subtype": minor, "params": params}
        table = self.parsed_config("charsets", self.compile)
        charset = normalise(params.get("charset", "") or "")
        entry = table.get(charset) if charset else None
        if entry is None or entry[0] in (OK, DECLINED, DONE):
            self.log(LOGINFO, f"pass, {charset or 'no charset'}")
            return DECLINED
        code, message = entry
        self.log(LOGINFO, f"fail, charset {charset}")
        status = "#4.6.1" if is_soft(code) else "#5.6.1"
        return code, f"{message or 'Content-Type denied'} ({status})"
