"""`orcac fmt`: one canonical layout, comments kept, idempotent.

Layout: two-space indentation; `=` aligned within a run of settings; one blank line
between declarations; single blank lines inside a block kept where the author put
them; a nested block with only short settings and no comments on one line
(`stage s { tasks = [a] epochs = 1 }`); multi-line strings re-indented two spaces
inside their setting, their value unchanged. Comments stay attached to what follows
them, or to the end of the line they were on.

>>> print(format_text('orca 1\\ntask t{from=jsonl("a.jsonl") # rows\\nprompt="{{ q }}"}', "x.orca"), end="")
orca 1
<BLANKLINE>
task t {
  from   = jsonl("a.jsonl")  # rows
  prompt = "{{ q }}"
}
"""

from __future__ import annotations

from typing import Any

from orcac.specs.spec import Assign, Block, Call, Comment, Duration, List, Module, Num, Percent, Ref, Str, Value

INDENT = "  "
WIDTH = 100


def format_text(text: str, file: str) -> str:
    from orcac.grammar import parse

    module = parse(text, file)
    return _Formatter(module).run()


class _Formatter:
    def __init__(self, module: Module):
        self.m = module
        self.comments = sorted(module.comments, key=lambda c: (c.line, c.col))
        self.used: set[int] = set()
        self.out: list[str] = []
        self.tails: dict[int, str] = {}  # output line -> its end-of-line comment

    def emit(self, code: str, tail: str) -> None:
        if tail and "\n" not in code:
            self.tails[len(self.out)] = tail.strip()
        self.out.append(code + tail)

    def align_tails(self) -> None:
        """End-of-line comments on consecutive lines start in one column."""
        run: list[int] = []
        for i in sorted(self.tails) + [-1]:
            if run and i != run[-1] + 1:
                if len(run) > 1:
                    codes = {j: self.out[j][: len(self.out[j]) - len(self.tails[j])].rstrip() for j in run}
                    col = max(len(c) for c in codes.values()) + 2
                    for j in run:
                        self.out[j] = codes[j].ljust(col) + self.tails[j]
                run = []
            run.append(i)

    # -- comments --

    def _take(self, pred) -> list[Comment]:
        got = []
        for i, c in enumerate(self.comments):
            if i not in self.used and pred(c):
                self.used.add(i)
                got.append(c)
        return got

    def before(self, line: int) -> list[Comment]:
        return self._take(lambda c: c.line < line)

    def within(self, first: int, last: int) -> list[Comment]:
        return self._take(lambda c: first <= c.line <= last)

    def trailing(self, line: int, col: int) -> str:
        got = self._take(lambda c: c.line == line and c.col >= col)
        return "  " + "  ".join(c.text for c in got) if got else ""

    def emit_comments(self, comments: list[Comment], indent: str, prev_line: int | None) -> int | None:
        for c in comments:
            if prev_line is not None and c.line > prev_line + 1 and self.out and self.out[-1] != "":
                self.out.append("")
            self.out.append(indent + c.text)
            prev_line = c.line
        return prev_line

    # -- module --

    def run(self) -> str:
        m = self.m
        items: list[tuple[str, Any, int, int]] = []  # (kind, the version, an Import or a Block, lines)
        if m.version is not None and m.version_span is not None:
            items.append(("version", m.version, m.version_span.line, m.version_span.end_line))
        items += [("import", i, i.span.line, i.span.end_line) for i in m.imports]
        items += [("block", b, b.span.line, b.span.end_line) for b in m.blocks]
        items.sort(key=lambda it: it[2])
        prev_kind = None
        prev_line = None
        for kind, item, first, last in items:
            lead = self.before(first)
            if self.out:
                gap = (lead[0].line if lead else first) > (prev_line or 0) + 1
                if kind != "import" or prev_kind != "import" or gap:
                    self.out.append("")
            self.emit_comments(lead, "", None)
            if lead and first > lead[-1].line + 1:
                self.out.append("")
            if kind == "version":
                line = f"orca {item}"
                self.emit(line, self.trailing(first, 0))
            elif kind == "import":
                line = f'import "{_escape(item.path)}"'
                self.emit(line, self.trailing(first, 0))
            else:
                self.block(item, 0)
            prev_kind, prev_line = kind, last
        rest = self._take(lambda c: True)
        if rest:
            if self.out and rest[0].line > (prev_line or 0) + 1:
                self.out.append("")
            self.emit_comments(rest, "", None)
        self.align_tails()
        return "\n".join(self.out).rstrip("\n") + "\n" if self.out else ""

    # -- blocks --

    def header(self, b: Block) -> str:
        return f"{b.kind} {b.name} {{" if b.name else f"{b.kind} {{"

    def one_line(self, b: Block, depth: int) -> str | None:
        if depth == 0 or not all(isinstance(x, Assign) for x in b.members):
            return None
        if any(
            b.span.line <= c.line <= b.span.end_line and i not in self.used
            for i, c in enumerate(self.comments)
            if not (c.line == b.span.end_line and c.col > b.span.end_col - 1)
        ):
            return None
        parts = []
        for a in b.members:
            v = self.value(a.value, "")
            if "\n" in v:
                return None
            parts.append(f"{a.key} = {v}")
        text = self.header(b) + (" " + " ".join(parts) + " }" if parts else "}")
        return text if len(INDENT * depth + text) <= WIDTH else None

    def block(self, b: Block, depth: int) -> None:
        indent = INDENT * depth
        one = self.one_line(b, depth)
        if one is not None:
            self.emit(indent + one, self.trailing(b.span.end_line, b.span.end_col - 1))
            return
        # a comment on the header line stays there
        head_trailing = (
            self.trailing(b.span.line, b.kind_span.col) if not b.members or b.members[0].span.line > b.span.line else ""
        )
        self.emit(indent + self.header(b), head_trailing)
        inner = indent + INDENT
        widths = self.widths(b)
        prev_last = b.span.line
        for member in b.members:
            lead = self.before(member.span.line)
            start = lead[0].line if lead else member.span.line
            if start > prev_last + 1 and prev_last != b.span.line:
                self.out.append("")
            self.emit_comments(lead, inner, None)
            if lead and member.span.line > lead[-1].line + 1:
                self.out.append("")
            if isinstance(member, Block):
                self.block(member, depth + 1)
            else:
                self.assign(member, inner, widths.get(id(member), len(member.key)))
            prev_last = member.span.end_line
        rest = self.before(b.span.end_line)
        rest += self._take(lambda c: c.line == b.span.end_line and c.col < b.span.end_col - 1)
        if rest:
            if rest[0].line > prev_last + 1 and prev_last != b.span.line:
                self.out.append("")
            self.emit_comments(rest, inner, None)
        self.emit(indent + "}", self.trailing(b.span.end_line, b.span.end_col - 1))

    def widths(self, b: Block) -> dict[int, int]:
        """Key width per setting: `=` aligns within a run of settings with no blank line or block between."""
        groups: list[list[Assign]] = []
        current: list[Assign] = []
        last_line = b.span.line
        for member in b.members:
            lead_line = self._first_comment_line(last_line, member.span.line)
            start = lead_line if lead_line is not None else member.span.line
            blank = start > last_line + 1 and last_line != b.span.line
            if isinstance(member, Assign) and not blank:
                current.append(member)
            else:
                if current:
                    groups.append(current)
                current = [member] if isinstance(member, Assign) else []
            last_line = member.span.end_line
        if current:
            groups.append(current)
        return {id(a): max(len(x.key) for x in g) for g in groups for a in g}

    def _first_comment_line(self, after: int, before: int) -> int | None:
        lines = [c.line for i, c in enumerate(self.comments) if i not in self.used and after < c.line < before]
        return min(lines) if lines else None

    def assign(self, a: Assign, indent: str, width: int) -> None:
        inner = self.within(a.span.line + 1, a.span.end_line - 1) if a.span.end_line > a.span.line else []
        # comments inside a multi-line value move above the setting
        if a.span.end_line > a.span.line:
            inner = [c for c in inner] + self._take(
                lambda c: c.line == a.span.line and c.col > a.key_span.col and not isinstance(a.value, Str)
            )
            self.emit_comments(sorted(inner, key=lambda c: (c.line, c.col)), indent, None)
        value = self.value(a.value, indent)
        tail = self.trailing(a.span.end_line, a.span.end_col - 1)
        self.emit(f"{indent}{a.key.ljust(width)} = {value}", tail)

    # -- values --

    def value(self, v: Value, indent: str) -> str:
        if isinstance(v, Str):
            if v.triple and "\n" in v.value:
                body = "\n".join((indent + INDENT + line) if line else "" for line in v.value.split("\n"))
                return f'"""\n{body}\n{indent}"""'
            return v.raw
        if isinstance(v, (Num, Percent, Duration)):
            return v.raw
        if isinstance(v, Ref):
            return v.name
        if isinstance(v, Call):
            args = [self.value(a, indent) for a in v.args] + [
                f"{k.name} = {self.value(k.value, indent)}" for k in v.kwargs
            ]
            return f"{v.name}({', '.join(args)})"
        assert isinstance(v, List)
        items = [self.value(i, indent + INDENT) for i in v.items]
        flat = f"[{', '.join(items)}]"
        if "\n" not in flat and len(indent) + len(flat) <= WIDTH - 20:
            return flat
        body = "".join(f"{indent}{INDENT}{item},\n" for item in items)
        return f"[\n{body}{indent}]"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')
