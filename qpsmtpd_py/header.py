"""A message header as an ordered list of fields that plugins can read and edit."""

import re

_FIELD_START = re.compile(r"^([^\s:]+)[ \t]*:")


class _Parsed(str):
    """A value read from the message; `sep` is the original text between the name
    and the value (':', ' : ', ':  ' ...) so an unchanged field is written back
    byte for byte (DKIM signatures with simple canonicalization stay valid)."""

    sep = ": "

    def __new__(cls, value, sep):
        obj = super().__new__(cls, value)
        obj.sep = sep
        return obj


class Header:
    """Header fields in order. Values keep their folding; names compare case-blind."""

    def __init__(self, fields=None):
        self.fields = list(fields or [])   # [(name, value_without_trailing_newline)]

    @classmethod
    def parse(cls, text):
        """Parse header text (LF line ends). A line that is not a field is kept as a
        continuation of the previous one, or dropped if it comes first. Linear in the
        size of the header: a field's lines are joined once, at its end."""
        fields = []             # [name, separator, [value lines]]
        for line in text.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and fields:
                fields[-1][2].append(line)
                continue
            match = _FIELD_START.match(line)
            if match:
                name = match.group(1)
                value = line[match.end():].lstrip(" \t")
                fields.append([name, line[len(name):len(line) - len(value)], [value]])
            elif fields:
                fields[-1][2].append(" " + line)
        return cls((name, _Parsed("\n".join(lines), sep)) for name, sep, lines in fields)

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name):
        lname = name.lower()
        return [value for field, value in self.fields if field.lower() == lname]

    def count(self, name):
        return len(self.get_all(name))

    def add(self, name, value, prepend=False):
        """Add a field; prepend=True puts it on top (trace fields like Received)."""
        if prepend:
            self.fields.insert(0, (name, value))
        else:
            self.fields.append((name, value))

    def replace(self, name, value):
        """Set one value for `name`: the first occurrence is replaced, others removed."""
        lname = name.lower()
        out, done = [], False
        for field, old in self.fields:
            if field.lower() == lname:
                if not done:
                    out.append((field, value))
                    done = True
                continue
            out.append((field, old))
        if not done:
            out.append((name, value))
        self.fields = out

    def delete(self, name):
        lname = name.lower()
        self.fields = [(f, v) for f, v in self.fields if f.lower() != lname]

    def rename(self, old, new):
        lold = old.lower()
        self.fields = [((new if f.lower() == lold else f), v) for f, v in self.fields]

    def as_string(self):
        """The header block with LF line ends, without the blank separator line."""
        return "".join(f"{name}{getattr(value, 'sep', ': ')}{value}\n" for name, value in self.fields)

    def as_bytes(self):
        return self.as_string().encode("utf-8", "surrogateescape")

    def __contains__(self, name):
        return bool(self.get_all(name))

    def __iter__(self):
        return iter(self.fields)
