"""Parsing .orca text into syntax nodes (orcac.specs.spec), with syntax errors in words.

The grammar is `orca.lark` beside this file: LALR(1), positions propagated, and the
parser tables cached on disk (`cache=True`) so a cold `orcac check` does not rebuild
them. The transformer is separate from the parser (Lark does not pass `meta` to a
transformer given to `Lark(...)`), and a syntax error stops parsing at the first one.
"""

from __future__ import annotations

import gc
import re
import textwrap
import unicodedata
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer

from orcac.specs.diagnostics import CompileError, Diagnostic, did_you_mean
from orcac.specs.spec import (
    Assign,
    Block,
    Call,
    Comment,
    Duration,
    Import,
    KwArg,
    List,
    Module,
    Num,
    Percent,
    Ref,
    Span,
    Str,
)

GRAMMAR = Path(__file__).with_name("orca.lark")

# Token types as the user should read them in "expected ..." messages.
WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "TRIPLE_STRING": "a string",
    "PERCENT": "a percentage",
    "DURATION": "a duration",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "ORCA": "'orca'",
    "IMPORT": "'import'",
    "$END": "the end of the file",
}


@dataclass
class _ParseState:
    """What one call of parse() collects: its file's name for every span, and the comments the
    lexer drops (they are %ignored by the grammar). The LALR parser and its transformer are built
    once and shared, so this lives in a context variable that parse() sets for its own call: two
    threads of the language server parsing at once each see only their own."""

    file: str
    comments: list[Token] = field(default_factory=list)


_STATE: ContextVar[_ParseState] = ContextVar("orcac_parse_state")


def _collect_comment(token: Token) -> None:
    state = _STATE.get(None)
    if state is not None:  # None: the lexer run on its own (tests compare it with Lark's)
        state.comments.append(token)


class _FastLexer(Lexer):
    """Lark's basic lexer, semantically: the grammar's own terminals tried in Lark's order
    (priority, then width), keywords split from NAME; but one compiled alternation matched
    in a tight loop, which is most of what makes parsing a large spec fast."""

    __future_interface__ = 2  # lex(lexer_state, parser_state), as Lark's own lexers

    def __init__(self, conf):
        terminals = sorted(
            conf.terminals, key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name)
        )
        self.keywords = {}
        parts = []
        for t in terminals:
            if t.pattern.type == "str" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t.pattern.value):
                self.keywords[t.pattern.value] = t.name
            else:
                parts.append(f"(?P<{t.name}>{t.pattern.to_regexp()})")
        self.master = re.compile("|".join(parts))
        self.ignore = frozenset(conf.ignore)
        self.callbacks = dict(conf.callbacks)

    def lex(self, state, parser_state):
        text = state.text.text if hasattr(state.text, "text") else state.text
        match, keywords, ignore, callbacks = self.master.match, self.keywords, self.ignore, self.callbacks
        pos, line, line_start, n = 0, 1, 0, len(text)
        while pos < n:
            m = match(text, pos)
            if m is None:
                raise UnexpectedCharacters(text, pos, line, pos - line_start + 1)
            kind, value, end = m.lastgroup, m.group(), m.end()
            start_line, start_col = line, pos - line_start + 1
            newlines = value.count("\n")
            if newlines:
                line += newlines
                line_start = pos + value.rindex("\n") + 1
            if kind in ignore:
                if kind in callbacks:
                    callbacks[kind](Token(kind, value, pos, start_line, start_col, line, end - line_start + 1, end))
            else:
                if kind == "NAME" and value in keywords:
                    kind = keywords[value]
                yield Token(kind, value, pos, start_line, start_col, line, end - line_start + 1, end)
            pos = end


@lru_cache(maxsize=1)
def parser() -> Lark:
    # The transformer runs inside the parser (no parse tree is built) and positions come
    # from the tokens themselves rather than propagate_positions: about 3x faster.
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        lexer=_FastLexer,
        propagate_positions=False,
        maybe_placeholders=True,
        cache=True,
        transformer=_ToNodes(),
        lexer_callbacks={"COMMENT": _collect_comment},
    )


def parse(text: str, file: str) -> Module:
    """Parse one file. Raises CompileError with the first syntax error."""
    state = _ParseState(file)
    token = _STATE.set(state)
    gc_was = gc.isenabled()
    gc.disable()  # many small objects, no cycles: the cyclic GC only costs time here
    try:
        module = parser().parse(text)
    except UnexpectedInput as error:
        raise CompileError([_syntax_error(error, text, file)], {file: text}) from None
    except _NodeError as error:
        raise CompileError([error.diagnostic], {file: text}) from None
    except VisitError as error:  # raised inside a callback: unwrap
        if isinstance(error.orig_exc, _NodeError):
            raise CompileError([error.orig_exc.diagnostic], {file: text}) from None
        raise error.orig_exc from None
    finally:
        _STATE.reset(token)
        if gc_was:
            gc.enable()
    comments = tuple(Comment(text=t.value.rstrip(), line=t.line, col=t.column) for t in state.comments)
    return replace(module, file=file, comments=comments)


# ---- tree -> nodes ------------------------------------------------------------------------


class _NodeError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.I)
_LONE_SURROGATE = re.compile(r"\\u(d[89a-f][0-9a-f]{2})", re.I)


def unescape(body: str) -> str:
    """Escapes of a "..." string: \\n \\t \\r \\" \\\\ \\0 \\uXXXX; any other is kept as written
    (so regex("\\d+") means what it says). A UTF-16 pair (\\ud83d\\ude00) is the one character
    it encodes; a lone surrogate is not text (see `lone_surrogate`)."""

    def sub(m: re.Match) -> str:
        s = m.group(1)
        if s[0] == "u" and len(s) == 5:
            return chr(int(s[1:], 16))
        return _ESCAPES.get(s, "\\" + s)

    out, pos = [], 0
    for m in _SURROGATE_PAIR.finditer(body):
        if _escaped(body, m.start()):
            continue
        high, low = int(m.group(1), 16), int(m.group(2), 16)
        out += [_ESCAPE.sub(sub, body[pos : m.start()]), chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))]
        pos = m.end()
    out.append(_ESCAPE.sub(sub, body[pos:]))
    return "".join(out)


def _escaped(body: str, i: int) -> bool:
    """Whether the backslash at body[i] is itself escaped (preceded by an odd run of backslashes)."""
    run = 0
    while i - run - 1 >= 0 and body[i - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def lone_surrogate(body: str) -> int | None:
    """Offset in `body` of a \\uD800-\\uDFFF escape that is not half of a pair, or None."""
    paired = set()
    for m in _SURROGATE_PAIR.finditer(body):
        if not _escaped(body, m.start()):
            paired.update((m.start(), m.start() + 6))
    for m in _LONE_SURROGATE.finditer(body):
        if m.start() not in paired and not _escaped(body, m.start()):
            return m.start()
    return None


def triple_value(raw: str) -> str:
    """The value of a \"\"\"...\"\"\" string: first and last blank lines dropped, trailing
    spaces stripped, common indentation removed. No escapes."""
    body = raw[3:-3]
    if "\n" not in body:
        return body
    lines = body.split("\n")
    if not lines[0].strip():
        lines = lines[1:]
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    return textwrap.dedent("\n".join(line.rstrip() for line in lines))


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file=file, line=tok.line, col=tok.column, end_line=tok.end_line, end_col=tok.end_column)


def _between(file: str, first: Token | Span, last: Token | Span) -> Span:
    if isinstance(first, Token):
        line, col = first.line, first.column
    else:
        line, col = first.line, first.col
    if isinstance(last, Token):
        end_line, end_col = last.end_line, last.end_column
    else:
        end_line, end_col = last.end_line, last.end_col
    return Span(file=file, line=line, col=col, end_line=end_line, end_col=end_col)


class _ToNodes(Transformer):
    """Parse-tree rules -> syntax nodes (orcac.specs.spec), one method per grammar rule."""

    @property
    def file(self) -> str:
        """The file of the parse() call this transformer is running for."""
        return _STATE.get().file

    def start(self, items):
        version = version_span = None
        imports, blocks = [], []
        for item in items:
            if isinstance(item, Import):
                imports.append(item)
            elif isinstance(item, Block):
                blocks.append(item)
            elif version is None:
                version, version_span = item
            else:
                raise _NodeError(Diagnostic("a second version line", item[1], "keep one 'orca 1' line, at the top"))
        return Module(
            file=self.file, version=version, version_span=version_span, imports=tuple(imports), blocks=tuple(blocks)
        )

    def version(self, children):
        kw, tok = children
        span = _between(self.file, kw, tok)
        if not re.fullmatch(r"[0-9]+", tok.value):
            raise _NodeError(Diagnostic(f"the language version must be a whole number, got {tok.value}", span))
        return int(tok.value), span

    def import_stmt(self, children):
        kw, tok = children
        return Import(path=self._unescaped(tok), span=_between(self.file, kw, tok))

    def _unescaped(self, tok: Token) -> str:
        body = tok.value[1:-1]
        bad = lone_surrogate(body)
        if bad is not None:
            col = tok.column + 1 + bad
            raise _NodeError(
                Diagnostic(
                    f"'{body[bad : bad + 6]}' is half of a UTF-16 surrogate pair, not a character",
                    Span(file=self.file, line=tok.line, col=col, end_line=tok.line, end_col=col + 6),
                    "write the character itself, or both halves of the pair (\\ud83d\\ude00 is one emoji)",
                )
            )
        return unescape(body)

    def block(self, children):
        kind, name, _lbrace, *members, rbrace = children
        f = self.file
        return Block(
            kind=kind.value,
            kind_span=_tok_span(f, kind),
            name=name.value if name is not None else None,
            name_span=_tok_span(f, name) if name is not None else None,
            members=tuple(members),
            span=_between(f, kind, rbrace),
        )

    def assign(self, children):
        key, value = children
        f = self.file
        return Assign(key=key.value, key_span=_tok_span(f, key), value=value, span=_between(f, key, value.span))

    def string(self, children):
        (tok,) = children
        span = _tok_span(self.file, tok)
        if tok.type == "TRIPLE_STRING":
            return Str(value=triple_value(tok.value), raw=tok.value, triple=True, span=span)
        return Str(value=self._unescaped(tok), raw=tok.value, span=span)

    def number(self, children):
        (tok,) = children
        raw = tok.value
        value: int | float = int(raw) if re.fullmatch(r"[+-]?[0-9]+", raw) else float(raw)
        return Num(value=value, raw=raw, span=_tok_span(self.file, tok))

    def percent(self, children):
        (tok,) = children
        return Percent(value=float(Decimal(tok.value[:-1]) / 100), raw=tok.value, span=_tok_span(self.file, tok))

    def duration(self, children):
        (tok,) = children
        m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", tok.value)
        scale = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return Duration(seconds=float(Decimal(m.group(1)) * scale), raw=tok.value, span=_tok_span(self.file, tok))

    def ref(self, children):
        (tok,) = children
        return Ref(name=tok.value, span=_tok_span(self.file, tok))

    def kwarg(self, children):
        key, value = children
        return KwArg(name=key.value, value=value, span=_between(self.file, key, value.span))

    def call(self, children):
        name, *rest, rpar = children
        args, kwargs = [], []
        for item in rest:
            if item is None:
                continue
            if isinstance(item, KwArg):
                kwargs.append(item)
            elif kwargs:
                raise _NodeError(Diagnostic("a positional argument after a named one", item.span))
            else:
                args.append(item)
        return Call(name=name.value, args=tuple(args), kwargs=tuple(kwargs), span=_between(self.file, name, rpar))

    def list(self, children):
        lsqb, *items, rsqb = children
        return List(items=tuple(c for c in items if c is not None), span=_between(self.file, lsqb, rsqb))


# ---- syntax errors in words -----------------------------------------------------------------


_VALUE_START = {"NAME", "NUMBER", "STRING", "TRIPLE_STRING", "PERCENT", "DURATION", "LSQB"}


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "NAME":
        return f"name '{token.value}'"
    if token.type in ("STRING", "TRIPLE_STRING"):
        text = token.value if len(token.value) <= 32 else token.value[:28] + '..."'
        return "string " + text.encode("unicode_escape").decode("ascii").replace("\\\\", "\\")
    if token.type in ("NUMBER", "PERCENT", "DURATION"):
        return f"{token.type.lower()} {token.value}"
    return f"'{token.value}'"


def _expected(names) -> str:
    names = set(names)
    words = set()
    if _VALUE_START <= names:
        names -= _VALUE_START
        words.add("a value")
    words = sorted(words | {WORDS.get(n, n) for n in names if not n.startswith("__")})
    if len(words) <= 1:
        return words[0] if words else "nothing"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _unclosed_brace(text: str) -> tuple[int, int] | None:
    """Line and column of the last '{' that is never closed (strings and comments skipped)."""
    stack = []
    for m in re.finditer(r'"""(?:[^"]|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}]', text):
        if m.group() == "{":
            stack.append(m.start())
        elif m.group() == "}" and stack:
            stack.pop()
    if not stack:
        return None
    pos = stack[-1]
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _syntax_error(error: UnexpectedInput, text: str, file: str) -> Diagnostic:
    line, col = max(error.line, 1), max(error.column, 1)
    span = Span(file=file, line=line, col=col, end_line=line, end_col=col + 1)
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(text, error.pos_in_stream, span)
    if isinstance(error, UnexpectedToken):
        tok = error.token
        if tok.type != "$END":
            span = _tok_span(file, tok)
        else:
            lines = text.splitlines() or [""]
            span = Span(
                file=file, line=len(lines), col=len(lines[-1]) + 1, end_line=len(lines), end_col=len(lines[-1]) + 2
            )
        try:  # precise: LALR's default reductions make error.expected too wide
            expected = set(error.interactive_parser.accepts()) or set(error.expected)
        except Exception:  # noqa: BLE001 - Lark's interactive parser can fail in its own ways: fall back to its wider set
            expected = set(error.expected)
        if tok.type == "$END" and "RBRACE" in expected:
            at = _unclosed_brace(text)
            if at:
                span = Span(file=file, line=at[0], col=at[1], end_line=at[0], end_col=at[1] + 1)
            return Diagnostic("this '{' is never closed", span, "add the matching '}'")
        if tok.type == "EQUAL" and "LBRACE" in expected:
            return Diagnostic(
                "unexpected '=': 'key = value' belongs inside a block",
                span,
                "put it inside a declaration, e.g. task NAME { ... }",
            )
        message = f"unexpected {_describe(tok)}; expected {_expected(expected)}"
        hint = None
        before = (
            re.search(r"(?:^|[\s}])([A-Za-z_][A-Za-z0-9_]*)\s*$", text[: tok.start_pos or 0])
            if tok.type != "$END"
            else None
        )
        if before and tok.type == "NUMBER" and "LBRACE" in expected:
            word = before.group(1)
            near = did_you_mean(word, ["orca"])
            if near:  # `orac 1`
                at = text.count("\n", 0, before.start(1)) + 1
                col = before.start(1) - (text.rfind("\n", 0, before.start(1)) + 1) + 1
                span = Span(file=file, line=at, col=col, end_line=at, end_col=col + len(word))
                return Diagnostic(
                    f"unknown word '{word}' before the version number", span, f"{near} A spec starts with: orca 1"
                )
        if tok.type == "COMMA" and "RBRACE" in expected:  # `{ a = 1, b = 2 }`, as in JSON or HCL
            hint = "settings in a block are separated by whitespace or newlines, not ',': take the ',' out"
        elif expected == {"LBRACE"}:
            hint = "a setting is written 'key = value'; a block is 'kind name { ... }'"
        elif "EQUAL" in expected and tok.type in _VALUE_START - {"NAME"}:
            hint = "a setting is written key = value: the '=' is missing"
        elif _VALUE_START <= expected:
            hint = "write a value after '=': a string, a number, a name, a list or a call"
        elif (
            tok.type in ("NAME", "STRING", "NUMBER")
            and expected & {"COMMA", "RPAR", "RSQB"}
            and "EQUAL" not in expected
        ):
            hint = "separate items with ','"
        return Diagnostic(message, span, hint)
    return Diagnostic(str(error).splitlines()[0], span)


# Characters a word processor puts where a spec needs plain ASCII punctuation.
_TYPOGRAPHIC_QUOTES = "\u201c\u201d\u201e\u201f\u2018\u2019\u201a\u201b\u00ab\u00bb\u2033\u2032"
_LEXEME = re.compile(r"[+-]?[0-9.][0-9A-Za-z_.%+-]*")


def _unexpected_character(text: str, pos: int, span: Span) -> Diagnostic:
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        return Diagnostic(
            "this string is never closed",
            span,
            'end it with " on the same line, or use """ for text over several lines',
        )
    if char in _TYPOGRAPHIC_QUOTES:
        return Diagnostic(
            f"unexpected character '{char}' (a typographic quote)",
            span,
            'write strings in straight double quotes "..."; a word processor may have replaced them',
        )
    if char.isspace() or unicodedata.category(char) in ("Zs", "Cf"):
        name = unicodedata.name(char, "an invisible character")
        return Diagnostic(
            f"unexpected character U+{ord(char):04X} ({name.lower()})",
            span,
            "replace it with an ordinary space; it often comes with text pasted from a document",
        )
    word = _LEXEME.match(text, pos)
    if word and (char.isdigit() or char in "+-."):
        lexeme = word.group()
        end = Span(file=span.file, line=span.line, col=span.col, end_line=span.line, end_col=span.col + len(lexeme))
        return Diagnostic(
            f"'{lexeme}' is not a number, a duration or a percentage",
            end,
            "a duration is a number and a unit: 500ms, 30s, 1.5m, 2h; a percentage is written 20%",
        )
    return Diagnostic(
        f"unexpected character '{char}'" if char.isprintable() else f"unexpected character U+{ord(char):04X}", span
    )
