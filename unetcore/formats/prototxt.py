"""Caffe's protobuf text format: tokenizer, parser and printer.

``parse(text, "NetParameter")`` returns a ``Message`` checked against the schema in
``unetcore.formats.schema``. Any syntax or schema error raises ``PrototxtError`` located
as ``file:line:col`` with, for a misspelt name, a "did you mean" suggestion.
``to_text(message)`` prints a message back; ``parse(to_text(m)) == m``.
"""
import difflib
import math
import re

from unetcore.errors import PrototxtError
from unetcore.formats.schema import MESSAGES

# One token: whitespace and comments are skipped, everything else is kept.
_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<symbol>[{}<>\[\]:,;])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}
_FLOAT_WORDS = {"inf": math.inf, "infinity": math.inf, "-inf": -math.inf,
                "-infinity": -math.inf, "nan": math.nan, "-nan": math.nan}
_BOOL_WORDS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


class Message:
    """A parsed protobuf message: attribute access gives a field's value or default."""

    def __init__(self, type_name, where=("<string>", 0, 0)):
        self._type = MESSAGES[type_name]
        self._values = {}
        self._where = where          # (file, line, col) of the message's start
        self._raw = []               # (name, token texts) of an open message's fields

    @property
    def type_name(self):
        return self._type.name

    def has(self, name):
        return name in self._values

    @property
    def source_file(self):
        """The file this message was parsed from, or None for text parsed from a string."""
        return None if self._where[0] == "<string>" else self._where[0]

    def fields(self):
        """The set fields in the order they were set: (name, value) pairs."""
        return list(self._values.items())

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._values:
            return self._values[name]
        spec = self._type.fields.get(name)
        if spec is None:
            raise AttributeError(f"{self._type.name} has no field '{name}'")
        if spec.repeated:
            return []
        if spec.type in MESSAGES:
            return Message(spec.type, self._where)
        return spec.default

    def set(self, name, value):
        """Set a field (append for a repeated one); value must already have the right type."""
        spec = self._type.fields.get(name)
        if spec is not None and spec.repeated:
            self._values.setdefault(name, []).append(value)
        else:
            self._values[name] = value
        return self

    def clear(self, name):
        """Unset a field (it reads as its default again)."""
        self._values.pop(name, None)
        return self

    def location(self):
        file, line, col = self._where
        return f"{file}:{line}:{col}"

    def __eq__(self, other):
        if not isinstance(other, Message) or other.type_name != self.type_name:
            return NotImplemented
        return (_comparable(self._values) == _comparable(other._values)
                and self._raw == other._raw)

    def __repr__(self):
        return f"<{self.type_name}\n{to_text(self)}>"


def _comparable(values):
    """Field values with NaN made equal to NaN, for message equality."""
    def fix(v):
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return {k: fix(v) for k, v in values.items()}


class _Tokens:
    """The token stream of one text, with positions for error messages."""

    def __init__(self, text, filename):
        self.filename = filename
        self.tokens = []
        pos, line, line_start = 0, 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                self._fail(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
            end = m.end()
            if m.lastgroup == "number":        # "1e" or "3px" is one bad number, not two tokens
                end = re.compile(r"[\w.]*").match(text, end).end()
            if m.lastgroup != "space":
                self.tokens.append((m.lastgroup, text[pos:end], line, pos - line_start + 1))
            newlines = m.group().count("\n")
            if newlines:
                line += newlines
                line_start = m.start() + m.group().rfind("\n") + 1
            pos = end
        self.index = 0
        self.end = (line, pos - line_start + 1)

    def _fail(self, message, line, col):
        raise PrototxtError(message, self.filename, line, col)

    def peek(self):
        if self.index < len(self.tokens):
            return self.tokens[self.index]
        return ("eof", "end of file", *self.end)

    def next(self):
        tok = self.peek()
        self.index += 1
        return tok

    def fail(self, message, tok=None):
        _, _, line, col = tok or self.peek()
        self._fail(message, line, col)

    def accept(self, symbol):
        if self.peek()[1] == symbol:
            return self.next()
        return None

    def expect(self, symbol, context):
        tok = self.peek()
        if tok[1] != symbol:
            self.fail(f"expected '{symbol}' {context}, found {_describe(tok)}")
        return self.next()


def _describe(tok):
    kind, text = tok[0], tok[1]
    return "end of file" if kind == "eof" else f"'{text}'"


def _field_hint(msg, name):
    """A close name in the message, or the messages where the field does belong."""
    close = difflib.get_close_matches(name, list(msg._type.fields), n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    owners = sorted(t for t, m in MESSAGES.items() if name in m.fields and not t.startswith("Open_"))
    return f"; it belongs in {', '.join(owners[:3])}" if owners else ""


def parse(text, type_name="NetParameter", filename="<string>"):
    """Parse protobuf text into a Message of the given type."""
    tokens = _Tokens(text, filename)
    msg = _parse_fields(tokens, type_name, closing=None, where=(filename, 1, 1))
    return msg


# Caffe's largest nets (ResNet-152) take about 300 KB of text; parsing takes ~1 s per MB and
# ~50 bytes of memory per byte, so a larger file is refused before it is read.
MAX_PROTOTXT_CHARS = 2 ** 21


def parse_file(path, type_name="NetParameter"):
    """Parse a prototxt file; a missing, unreadable or far too large file is a PrototxtError
    too."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_PROTOTXT_CHARS + 1)
    except FileNotFoundError:
        raise PrototxtError("no such file", str(path), 0, 0) from None
    except UnicodeDecodeError as err:
        raise PrototxtError(f"not a text prototxt (binary data at byte {err.start}); a Fiji "
                            "model (.modeldef.h5) is given as --modeldef, weights as --weights",
                            str(path), 0, 0) from None
    except OSError as err:
        raise PrototxtError(f"cannot read the file: {err}", str(path), 0, 0) from None
    if len(text) > MAX_PROTOTXT_CHARS:
        raise PrototxtError(f"more than {MAX_PROTOTXT_CHARS // 2 ** 20} MiB of text, far more "
                            "than a net or solver prototxt takes (the largest are ~300 KB); "
                            "is it the right file?", str(path), 0, 0)
    return parse(text, type_name, str(path))


def _parse_fields(tokens, type_name, closing, where):
    msg = Message(type_name, where)
    mtype = msg._type
    while True:
        tok = tokens.peek()
        if tok[0] == "eof":
            if closing is not None:
                tokens.fail(f"missing '{closing}': the message opened at line {where[1]}, "
                            f"column {where[2]} is not closed")
            return msg
        if closing is not None and tok[1] == closing:
            tokens.next()
            return msg
        if tok[0] != "ident":
            tokens.fail(f"expected a field name in {type_name}, found {_describe(tok)}")
        tokens.next()
        name = tok[1]
        if mtype.open:
            msg._raw.append((name, _skip_value(tokens, tok)))
        else:
            _parse_field(tokens, msg, name, tok)
        if not tokens.accept(","):
            tokens.accept(";")


def _parse_field(tokens, msg, name, name_tok):
    spec = msg._type.fields.get(name)
    if spec is None:
        tokens.fail(f"unknown field '{name}' in {msg.type_name}{_field_hint(msg, name)}",
                    name_tok)
    if not spec.repeated and msg.has(name):
        tokens.fail(f"field '{name}' is set twice in {msg.type_name} (it is not repeated)",
                    name_tok)
    if spec.type in MESSAGES:
        tokens.accept(":")
        for value in _parse_list(tokens, spec, lambda: _parse_submessage(tokens, spec)):
            msg.set(name, value)
        return
    tokens.expect(":", f"after field name '{name}'")
    for value in _parse_list(tokens, spec, lambda: _parse_scalar(tokens, spec)):
        msg.set(name, value)


def _parse_list(tokens, spec, parse_one):
    """One value, or '[a, b, ...]' for a repeated field."""
    if tokens.peek()[1] != "[":
        return [parse_one()]
    open_tok = tokens.next()
    if not spec.repeated:
        tokens.fail(f"field '{spec.name}' is not repeated and cannot take a list", open_tok)
    values = []
    if tokens.accept("]"):
        return values
    while True:
        values.append(parse_one())
        if tokens.accept("]"):
            return values
        tokens.expect(",", "between list values")


def _parse_submessage(tokens, spec):
    tok = tokens.peek()
    if tok[1] not in ("{", "<"):
        tokens.fail(f"expected '{{' to open {spec.type} '{spec.name}', found {_describe(tok)}")
    tokens.next()
    closing = "}" if tok[1] == "{" else ">"
    return _parse_fields(tokens, spec.type, closing, (tokens.filename, tok[2], tok[3]))


def _parse_scalar(tokens, spec):
    tok = tokens.next()
    kind, text = tok[0], tok[1]
    if spec.type == "string":
        if kind != "string":
            tokens.fail(f"field '{spec.name}' takes a quoted string, found {_describe(tok)}", tok)
        value = _unquote(text, tokens, tok)
        while tokens.peek()[0] == "string":          # adjacent strings concatenate
            nxt = tokens.next()
            value += _unquote(nxt[1], tokens, nxt)
        return value
    if spec.type == "bool":
        if text.lower() in _BOOL_WORDS and kind in ("ident", "number"):
            return _BOOL_WORDS[text.lower()]
        tokens.fail(f"field '{spec.name}' takes true or false, found {_describe(tok)}", tok)
    if spec.type == "enum":
        if kind == "ident" and text in spec.enum:
            return text
        hint = difflib.get_close_matches(text.upper(), spec.enum, n=1)
        suggestion = f"; did you mean {hint[0]}?" if hint else ""
        tokens.fail(f"field '{spec.name}' takes one of {', '.join(spec.enum)}, "
                    f"found {_describe(tok)}{suggestion}", tok)
    if spec.type in ("int", "uint"):
        return _parse_int(tokens, spec, tok)
    return _parse_float(tokens, spec, tok)


def _parse_int(tokens, spec, tok):
    kind, text = tok[0], tok[1]
    value = None
    if kind == "number":
        try:
            value = int(text, 0)
        except ValueError:
            if re.fullmatch(r"[-+]?\d+", text):        # leading zeros: read as decimal
                value = int(text, 10)
    if value is None:
        tokens.fail(f"field '{spec.name}' takes an integer, found {_describe(tok)}", tok)
    if spec.type == "uint" and not 0 <= value < 2 ** 32:     # caffe.proto's uint32
        tokens.fail(f"field '{spec.name}' takes an unsigned 32-bit integer (0 to 4294967295), "
                    f"found {text}", tok)
    if not -2 ** 63 <= value < 2 ** 63:              # protobuf's widest integer: int64
        tokens.fail(f"field '{spec.name}': {text} is out of range for a 64-bit integer", tok)
    return value


def _parse_float(tokens, spec, tok):
    kind, text = tok[0], tok[1]
    if kind == "ident" and text.lower() in _FLOAT_WORDS:
        return _FLOAT_WORDS[text.lower()]
    if kind == "number":
        body = text[:-1] if text[-1] in "fF" and "x" not in text.lower() else text
        try:
            return float(int(body, 16)) if "x" in body.lower() else float(body)
        except ValueError:
            pass
    tokens.fail(f"field '{spec.name}' takes a number, found {_describe(tok)}", tok)


def _unquote(text, tokens, tok):
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        esc = body[i + 1]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:]).group()
            out.append(chr(int(digits, 8)))
            i += 1 + len(digits)
        elif esc == "x" and re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]):
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]).group()
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        else:
            tokens.fail(f"unknown escape '\\{esc}' in string", tok)
    return "".join(out)


def _skip_value(tokens, name_tok):
    """Read past the value of a field of an open (unimplemented) message; return its tokens."""
    taken = []
    if tokens.accept(":"):
        taken.append(":")
        if tokens.peek()[1] not in ("{", "<", "["):
            tok = tokens.next()
            if tok[0] in ("eof", "symbol"):
                tokens.fail(f"expected a value for '{name_tok[1]}', found {_describe(tok)}", tok)
            return taken + [tok[1]]
    tok = tokens.next()
    pairs = {"{": "}", "<": ">", "[": "]"}
    if tok[1] not in pairs:
        tokens.fail(f"expected a value for '{name_tok[1]}', found {_describe(tok)}", tok)
    taken.append(tok[1])
    depth = [pairs[tok[1]]]
    while depth:
        t = tokens.next()
        if t[0] == "eof":
            tokens.fail(f"missing '{depth[-1]}' for the value of '{name_tok[1]}' opened at "
                        f"line {tok[2]}, column {tok[3]}", t)
        if t[1] in pairs:
            depth.append(pairs[t[1]])
        elif t[1] == depth[-1]:
            depth.pop()
        taken.append(t[1])
    return taken


# ---------------------------------------------------------------- printing

def to_text(msg, indent=0):
    """Print a message in protobuf text format (fields in the order they were set)."""
    pad = "  " * indent
    lines = [f"{pad}{name} {' '.join(texts)}" for name, texts in msg._raw]
    for name, value in msg.fields():
        spec = msg._type.fields[name]
        for v in (value if spec.repeated else [value]):
            if isinstance(v, Message):
                lines.append(f"{pad}{name} {{")
                body = to_text(v, indent + 1)
                if body:
                    lines.append(body)
                lines.append(f"{pad}}}")
            else:
                lines.append(f"{pad}{name}: {_format_scalar(v, spec.type)}")
    return "\n".join(lines)


def _format_scalar(value, type_):
    if type_ == "string":
        return '"' + "".join(_escape_char(c) for c in value) + '"'
    if type_ == "bool":
        return "true" if value else "false"
    if type_ == "float":
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    return str(value)


def _escape_char(c):
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", '"': '\\"'}
    if c in named:
        return named[c]
    if ord(c) < 32 or ord(c) == 127:
        return "\\%03o" % ord(c)
    return c
