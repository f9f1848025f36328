"""The Go template subset that environment configs use, parsed and evaluated without eval.

GimletD's users write Go template syntax in environment configs
(`frontend-{{ .BRANCH | sanitizeDNSName }}`), so we keep that syntax, but only the
part that turns variables into strings:

- `{{ .NAME }}` reads a variable; `{{-` and `-}}` trim the whitespace around an action;
- literals: `"strings"` with Go escapes, raw `` `strings` ``, integers;
- function calls `{{ default "x" .FOO }}`, pipelines `{{ .BRANCH | sanitizeDNSName | trunc 20 }}`
  (the piped value is the call's last argument, as in Go) and parenthesised
  calls `{{ upper (trimPrefix "v" .TAG) }}`;
- the functions in `FUNCTIONS`, with sprig's argument order.

Templates are data: there is no way to call anything else, read files or loop,
every template is evaluated once (a variable whose value contains `{{` is
copied as text, never evaluated), and the limits below bound the work one
template can cause. Every failure is a `TemplateError` whose message names the
variable, function or position and the template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel

from gimletd.errors import TemplateError
from gimletd.models import DNS_LABEL_MAX, TEMPLATE_MARK, Manifest

__all__ = [
    "FUNCTIONS",
    "MAX_ACTIONS",
    "MAX_NESTING",
    "MAX_OUTPUT_BYTES",
    "MAX_TEMPLATE_BYTES",
    "VERBATIM_FIELDS",
    "Function",
    "has_template",
    "render_template",
    "resolve_manifest",
    "sanitize_dns_name",
    "template_variables",
]

#: Longest template text (UTF-8 bytes) that is parsed; text without `{{` is never parsed.
MAX_TEMPLATE_BYTES = 64 * 1024
#: Most `{{ }}` actions in one template.
MAX_ACTIONS = 1000
#: Deepest nesting of parentheses inside one action.
MAX_NESTING = 16
#: Largest output (UTF-8 bytes) of one template, and largest value any function may return.
MAX_OUTPUT_BYTES = 1024 * 1024

#: Fields of an environment config that are not templated by `resolve_manifest`.
VERBATIM_FIELDS = frozenset({"deploy", "cleanup"})

_SPACE = " \t\r\n"
_NON_DNS_RUN = re.compile(r"[^0-9a-z]+")
_IDENT = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"[+-]?[0-9]+")
_PLAIN_STRING_RUN = re.compile(r'[^"\\\n]+')
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHORT_TEMPLATE = 60


def sanitize_dns_name(value: str) -> str:
    """Make `value` usable as a DNS-1123 label, as GimletD's `sanitizeDNSName` did.

    Lower case; every run of characters outside `[0-9a-z]` becomes one `-`; cut to
    63 characters; then leading and trailing `-` are removed. The result is a
    valid label or empty (for input without letters or digits).
    """
    dashed = _NON_DNS_RUN.sub("-", value.lower())
    return dashed[:DNS_LABEL_MAX].strip("-")


def has_template(text: str) -> bool:
    """Whether `text` contains a `{{` action at all; text without one renders as itself."""
    return TEMPLATE_MARK in text


def template_variables(text: str) -> set[str]:
    """The names of the variables `text` refers to, such as `{"BRANCH"}`.

    :raise TemplateError: the text is not a valid template.
    """
    if not has_template(text):
        return set()
    names: set[str] = set()
    for node in _parse_checked(text):
        if isinstance(node, _Action):
            _collect_fields(node.pipeline, names)
    return names


def check_manifest_templates(manifest: Manifest) -> None:
    """Parse every template of an environment config without rendering it.

    So an artifact with a broken template (an unknown function, `call`, a
    nested field) is refused when it is pushed, not when it is released.
    `deploy` is a policy, not a template; `cleanup` is checked with its policy.

    :raise TemplateError: naming the field and what is wrong.
    """
    data = manifest.model_dump(by_alias=True, exclude=set(VERBATIM_FIELDS))
    for field, text in _strings(data, ""):
        try:
            template_variables(text)
        except TemplateError as exc:
            raise TemplateError(f"{field or 'a key'}: {exc}") from None


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON-like value (keys too), with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield from _strings(str(key), where)
            yield from _strings(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def render_template(text: str, variables: Mapping[str, str]) -> str:
    """Evaluate the template `text` with `variables`, once.

    A variable that is not in `variables` is an error naming it, with one
    exception: a missing variable given to `default` (as an argument or piped
    into it) counts as empty, so `{{ .TAG | default "latest" }}` works whether or
    not CI sent `TAG`. Values are inserted as text and never evaluated again, so
    a variable holding `{{ .SECRET }}` renders as exactly that. Text without `{{`
    is returned unchanged, whatever its size.

    :raise TemplateError: the template cannot be parsed, names a missing variable
        or an unknown function, calls a function wrongly, or exceeds a limit.
    """
    if not has_template(text):
        return text
    template = _parse_checked(text)
    out: list[str] = []
    size = 0
    for node in template:
        if isinstance(node, str):
            piece = node
        else:
            value = _Evaluator(text, variables).pipeline(node.pipeline)
            piece = _as_output(value, text)
        size += _utf8_len(piece)
        if size > MAX_OUTPUT_BYTES:
            pos = 0 if isinstance(node, str) else node.pos
            raise _error(
                text, pos, f"the output is larger than the limit of {MAX_OUTPUT_BYTES} bytes"
            )
        out.append(piece)
    return "".join(out)


def resolve_manifest(manifest: Manifest, variables: Mapping[str, str]) -> Manifest:
    """A copy of `manifest` with every string in it rendered as a template.

    That covers `app`, `env`, `namespace`, the chart, every key and value in
    `values` (nested dicts and lists too), the patches, `manifests` and unknown
    extra fields. `deploy` and `cleanup` are copied verbatim: policies match
    against raw globs, and `cleanup.app` is rendered later with only `BRANCH`.
    The resolved `app`, `env` and `namespace` must be DNS-1123 labels.

    :raise TemplateError: a field cannot be rendered, or a resolved name is not a
        label; the message names the environment, the app and the field.
    """
    unresolved = _ManifestResolver(variables, manifest.env, manifest.app)
    env = unresolved.render(manifest.env, "env")
    app = unresolved.render(manifest.app, "app")
    resolved = _ManifestResolver(variables, env, app).model(manifest, "", skip=VERBATIM_FIELDS)
    try:
        resolved.check_resolved_names()
    except ValueError as exc:
        raise TemplateError(
            f"environment {manifest.env!r}, app {manifest.app!r}: after templating, {exc}; "
            "check the variables the name uses, or pipe them through sanitizeDNSName"
        ) from exc
    return resolved


# --- the syntax tree ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    """`.NAME`: a variable."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class _Literal:
    """A string or integer constant."""

    value: str | int
    pos: int


@dataclass(frozen=True, slots=True)
class _Sub:
    """`( pipeline )`."""

    pipeline: _Pipeline
    pos: int


_Operand = _Field | _Literal | _Sub


@dataclass(frozen=True, slots=True)
class _Command:
    """A function call with its arguments, or a single operand when `function` is None."""

    function: str | None
    operands: tuple[_Operand, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class _Pipeline:
    """Commands separated by `|`; each result is the next command's last argument."""

    commands: tuple[_Command, ...]


@dataclass(frozen=True, slots=True)
class _Action:
    """One `{{ }}` and where it starts in the template text."""

    pipeline: _Pipeline
    pos: int


_Template = tuple[str | _Action, ...]


def _collect_fields(pipeline: _Pipeline, names: set[str]) -> None:
    for command in pipeline.commands:
        for operand in command.operands:
            if isinstance(operand, _Field):
                names.add(operand.name)
            elif isinstance(operand, _Sub):
                _collect_fields(operand.pipeline, names)


# --- errors --------------------------------------------------------------------------------


def _shorten(text: str) -> str:
    if len(text) > _SHORT_TEMPLATE:
        text = text[: _SHORT_TEMPLATE - 1] + "…"
    return repr(text)


def _error(text: str, pos: int, problem: str, hint: str = "") -> TemplateError:
    """A TemplateError saying what is wrong, where, in which template, and how to fix it."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    where = f"line {line}, column {column}" if "\n" in text else f"column {column}"
    message = f"{problem} at {where} of template {_shorten(text)}"
    if hint:
        message += f"; {hint}"
    return TemplateError(message)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# --- lexing and parsing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # field, ident, string, number, pipe, lparen, rparen
    value: str | int
    pos: int


def _parse_checked(text: str) -> _Template:
    """Parse `text` after checking its size; the parse is cached, errors are not."""
    if len(text) > MAX_TEMPLATE_BYTES or _utf8_len(text) > MAX_TEMPLATE_BYTES:
        raise _error(
            text,
            0,
            f"the template is larger than the limit of {MAX_TEMPLATE_BYTES} bytes",
            "split it or move the large text out of the template",
        )
    return _parse(text)


@lru_cache(maxsize=512)
def _parse(text: str) -> _Template:
    nodes: list[str | _Action] = []
    actions = 0
    i = 0
    while True:
        start = text.find("{{", i)
        if start < 0:
            nodes.append(text[i:])
            return tuple(node for node in nodes if node != "")
        actions += 1
        if actions > MAX_ACTIONS:
            raise _error(text, start, f"the template has more than {MAX_ACTIONS} actions")
        chunk = text[i:start]
        body = start + 2
        if text.startswith("-", body) and body + 1 < len(text) and text[body + 1] in _SPACE:
            chunk = chunk.rstrip(_SPACE)
            body += 2
        nodes.append(chunk)
        tokens, i, trim_right = _lex_action(text, body, start)
        nodes.append(_Action(_Parser(text, tokens, start).action(), start))
        if trim_right:
            while i < len(text) and text[i] in _SPACE:
                i += 1


def _lex_action(text: str, i: int, start: int) -> tuple[list[_Token], int, bool]:
    """Tokens of the action starting at `start`, the index after its `}}`, and `-}}` or not."""
    tokens: list[_Token] = []
    n = len(text)
    while True:
        if i >= n:
            raise _error(text, start, "unclosed action", "add the closing '}}'")
        char = text[i]
        if char in _SPACE:
            if text.startswith("-}}", i + 1):
                return tokens, i + 4, True
            i += 1
            continue
        if text.startswith("}}", i):
            return tokens, i + 2, False
        if char in "|()":
            kind = {"|": "pipe", "(": "lparen", ")": "rparen"}[char]
            tokens.append(_Token(kind, char, i))
            i += 1
            continue
        token, i = _lex_operand(text, i)
        tokens.append(token)
        if i < n and text[i] not in _SPACE and text[i] not in "|()}":
            if text[i] == "." and token.kind == "field":
                raise _error(
                    text,
                    i,
                    "nested fields such as .A.B are not supported",
                    "variables are flat strings: use .NAME",
                )
            raise _error(text, i, f"unexpected {text[i]!r}", "separate arguments with spaces")


def _lex_operand(text: str, i: int) -> tuple[_Token, int]:
    char = text[i]
    if char == '"':
        value, end = _lex_string(text, i)
        return _Token("string", value, i), end
    if char == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise _error(text, i, "unterminated raw string", "close it with '`'")
        return _Token("string", text[i + 1 : end].replace("\r", ""), i), end + 1
    if char == ".":
        match = _IDENT.match(text, i + 1)
        if match is None:
            raise _error(
                text, i, "'.' must be followed by a variable name", "write .NAME, as in .BRANCH"
            )
        return _Token("field", match.group(), i), match.end()
    match = _NUMBER.match(text, i)
    if match is not None:
        digits = match.group().lstrip("+-")
        number = int(match.group()) if len(digits) <= 19 else _INT64_MAX + 1
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise _error(text, i, f"number {match.group()[:30]} is out of range")
        return _Token("number", number, i), match.end()
    match = _IDENT.match(text, i)
    if match is not None:
        return _Token("ident", match.group(), i), match.end()
    if char == "$":
        raise _error(text, i, "template variables ($name) are not supported", "use .NAME")
    if text.startswith("/*", i):
        raise _error(text, i, "comments are not supported")
    raise _error(text, i, f"unexpected {char!r}")


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX_ESCAPE_DIGITS = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = "0123456789abcdefABCDEF"
_OCTAL_DIGITS = "01234567"


def _lex_string(text: str, start: int) -> tuple[str, int]:
    """A Go interpreted string literal starting at the `"` at `start`, and the index after it."""
    parts: list[str] = []
    i = start + 1
    while True:
        run = _PLAIN_STRING_RUN.match(text, i)
        if run is not None:
            parts.append(run.group())
            i = run.end()
        if i >= len(text) or text[i] == "\n":
            raise _error(text, start, "unterminated string", "close it with '\"' on the same line")
        if text[i] == '"':
            return "".join(parts), i + 1
        char, i = _lex_escape(text, i)
        parts.append(char)


def _lex_escape(text: str, i: int) -> tuple[str, int]:
    """The character of the Go escape at `text[i]` (a backslash), and the index after it."""
    kind = text[i + 1 : i + 2]
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind], i + 2
    if kind in _HEX_ESCAPE_DIGITS:
        base, first, width = 16, i + 2, _HEX_ESCAPE_DIGITS[kind]
    elif kind and kind in _OCTAL_DIGITS:
        base, first, width = 8, i + 1, 3
    else:
        raise _error(text, i, f"unknown escape \\{kind}", 'use \\" \\\\ \\n \\t, or a raw `string`')
    digits = text[first : first + width]
    allowed = _OCTAL_DIGITS if base == 8 else _HEX_DIGITS
    if len(digits) != width or any(digit not in allowed for digit in digits):
        raise _error(text, i, f"invalid escape \\{kind}", f"it needs {width} digits")
    code = int(digits, base)
    if kind not in "uU" and code >= 0x80:
        raise _error(text, i, "byte escapes above \\x7f are not supported", "use \\u instead")
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise _error(text, i, f"escape {text[i : first + width]} is not a valid character")
    return chr(code), first + width


def _arguments(count: int, variadic: bool) -> str:
    text = f"{count} argument" + ("" if count == 1 else "s")
    return f"{text} or more" if variadic else text


class _Parser:
    """Recursive descent over one action's tokens: pipeline := command ('|' command)*."""

    def __init__(self, text: str, tokens: list[_Token], start: int) -> None:
        self.text = text
        self.tokens = tokens
        self.start = start
        self.index = 0

    def action(self) -> _Pipeline:
        if not self.tokens:
            raise _error(
                self.text, self.start, "empty action", "put a variable or call inside {{ }}"
            )
        pipeline = self.pipeline(depth=0)
        if self.index < len(self.tokens):
            raise _error(self.text, self.tokens[self.index].pos, "unmatched ')'")
        return pipeline

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def pipeline(self, depth: int) -> _Pipeline:
        commands: list[_Command] = []
        while True:
            commands.append(self.command(depth, piped=bool(commands)))
            token = self.peek()
            if token is None or token.kind == "rparen":
                return _Pipeline(tuple(commands))
            self.index += 1  # the pipe

    def command(self, depth: int, *, piped: bool) -> _Command:
        function: _Token | None = None
        operands: list[_Operand] = []
        here = self.peek()
        pos = here.pos if here is not None else len(self.text)
        while (token := self.peek()) is not None and token.kind not in ("pipe", "rparen"):
            self.index += 1
            if token.kind == "ident":
                if function is not None or operands:
                    raise _error(
                        self.text,
                        token.pos,
                        f"function {token.value} used as an argument",
                        f"wrap the call in parentheses: ({token.value} ...)",
                    )
                function = token
            elif token.kind == "lparen":
                operands.append(self.sub(token, depth + 1))
            elif token.kind == "field":
                operands.append(_Field(str(token.value), token.pos))
            else:
                operands.append(_Literal(token.value, token.pos))
        if function is None and not operands:
            after = " after '|'" if piped else ""
            raise _error(
                self.text, pos, f"missing value{after}", "put a variable, literal or call here"
            )
        if function is None:
            if piped:
                raise _error(
                    self.text,
                    pos,
                    "a value is piped into something that is not a function",
                    "pipe into a function such as default or sanitizeDNSName",
                )
            if len(operands) > 1:
                raise _error(
                    self.text,
                    pos,
                    "arguments given to something that is not a function",
                    "put a function such as default or sanitizeDNSName first",
                )
            return _Command(None, tuple(operands), pos)
        name = str(function.value)
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise _error(
                self.text,
                function.pos,
                f"unknown function {name!r}",
                f"use one of {', '.join(sorted(FUNCTIONS))}",
            )
        count = len(operands) + int(piped)
        if count < len(spec.params) or (count > len(spec.params) and not spec.variadic):
            raise _error(
                self.text,
                function.pos,
                f"{name} takes {_arguments(len(spec.params), spec.variadic)} "
                f"({spec.usage}), got {count}",
                "a piped value counts as the last argument",
            )
        return _Command(name, tuple(operands), pos)

    def sub(self, open_paren: _Token, depth: int) -> _Sub:
        if depth > MAX_NESTING:
            raise _error(
                self.text,
                open_paren.pos,
                f"parentheses are nested deeper than the limit of {MAX_NESTING}",
            )
        pipeline = self.pipeline(depth)
        close = self.peek()
        if close is None:
            raise _error(self.text, open_paren.pos, "unclosed '('", "add the matching ')'")
        self.index += 1
        return _Sub(pipeline, open_paren.pos)


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Missing:
    """A variable that was not given; only `default` accepts it, as empty."""

    name: str
    pos: int


_Value = str | int | _Missing


@dataclass(frozen=True, slots=True)
class Function:
    """A template function: its parameter types (str or int), usage text and implementation."""

    params: tuple[type, ...]
    usage: str
    call: Callable[..., str | int]
    variadic: bool = False


def _default(fallback: str | int, given: str | int) -> str | int:
    return fallback if given in ("", 0) else given


def _trunc(length: int, text: str) -> str:
    if length < 0:
        return text[length:] if len(text) + length > 0 else text
    return text[:length]


_QUOTE_ESCAPES = {value: "\\" + key for key, value in _SIMPLE_ESCAPES.items()}


def _go_quote(text: str) -> str:
    """`text` as Go's `%q` formats it: double quotes, Go escapes, printable runes as is."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _quote(*values: str | int) -> str:
    return " ".join(_go_quote(str(value)) for value in values)


#: The functions templates may call, by name, with sprig's argument order.
FUNCTIONS: Mapping[str, Function] = {
    "default": Function((object, object), "default FALLBACK VALUE", _default),
    "lower": Function((str,), "lower TEXT", str.lower),
    "upper": Function((str,), "upper TEXT", str.upper),
    "trunc": Function((int, str), "trunc LENGTH TEXT", _trunc),
    "replace": Function((str, str, str), "replace OLD NEW TEXT", lambda o, n, s: s.replace(o, n)),
    "trimPrefix": Function((str, str), "trimPrefix PREFIX TEXT", lambda p, s: s.removeprefix(p)),
    "trimSuffix": Function((str, str), "trimSuffix SUFFIX TEXT", lambda p, s: s.removesuffix(p)),
    "trim": Function((str,), "trim TEXT", str.strip),
    "quote": Function((), "quote VALUE...", _quote, variadic=True),
    "sanitizeDNSName": Function((str,), "sanitizeDNSName TEXT", sanitize_dns_name),
}

_TYPE_NAMES = {str: "a string", int: "a number"}


def _describe(value: str | int) -> str:
    return f"the number {value}" if isinstance(value, int) else f"the string {_shorten(value)}"


class _Evaluator:
    """Evaluates one action against the variables."""

    def __init__(self, text: str, variables: Mapping[str, str]) -> None:
        self.text = text
        self.variables = variables

    def pipeline(self, pipeline: _Pipeline) -> _Value:
        piped: list[_Value] = []
        for command in pipeline.commands:
            piped = [self.command(command, piped)]
        return piped[0]

    def command(self, command: _Command, piped: list[_Value]) -> _Value:
        if command.function is None:
            return self.operand(command.operands[0])
        args = [self.operand(operand) for operand in command.operands] + piped
        return self.call(command.function, args, command.pos)

    def operand(self, operand: _Operand) -> _Value:
        if isinstance(operand, _Field):
            if operand.name in self.variables:
                return self.variables[operand.name]
            return _Missing(operand.name, operand.pos)
        if isinstance(operand, _Literal):
            return operand.value
        return self.pipeline(operand.pipeline)

    def call(self, name: str, args: list[_Value], pos: int) -> _Value:
        spec = FUNCTIONS[name]
        values: list[str | int] = []
        for index, arg in enumerate(args):
            if isinstance(arg, _Missing):
                if name != "default":
                    raise _missing(self.text, arg)
                arg = ""
            expected = spec.params[index] if index < len(spec.params) else object
            if expected is not object and not isinstance(arg, expected):
                raise _error(
                    self.text,
                    pos,
                    f"{name} needs {_TYPE_NAMES[expected]} as argument {index + 1} "
                    f"({spec.usage}), got {_describe(arg)}",
                )
            values.append(arg)
        if name == "replace":
            old, new, source = (str(value) for value in values)
            count = source.count(old) if old else len(source) + 1
            if len(source) + count * (len(new) - len(old)) > MAX_OUTPUT_BYTES:
                raise _error(
                    self.text, pos, f"replace would produce more than {MAX_OUTPUT_BYTES} characters"
                )
        result = spec.call(*values)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_BYTES:
            raise _error(self.text, pos, f"{name} produced more than {MAX_OUTPUT_BYTES} characters")
        return result


def _missing(text: str, missing: _Missing) -> TemplateError:
    return _error(
        text,
        missing.pos,
        f"variable {missing.name} is not set",
        f"send {missing.name} in the artifact context, "
        f'or give a fallback: {{{{ .{missing.name} | default "..." }}}}',
    )


def _as_output(value: _Value, text: str) -> str:
    if isinstance(value, _Missing):
        raise _missing(text, value)
    return str(value)


# --- environment configs ---------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][\w-]*")
_M = TypeVar("_M", bound=BaseModel)


def _join(path: str, key: str) -> str:
    """`values.image.tag`, or `values.annotations['a.b/c']` for keys that are not plain words."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


class _ManifestResolver:
    """Renders every string of an environment config, naming env, app and field on failure."""

    def __init__(self, variables: Mapping[str, str], env: str, app: str) -> None:
        self.variables = variables
        self.env = env
        self.app = app

    def error(self, path: str, problem: str) -> TemplateError:
        return TemplateError(f"environment {self.env!r}, app {self.app!r}, field {path}: {problem}")

    def render(self, text: str, path: str) -> str:
        try:
            return render_template(text, self.variables)
        except TemplateError as exc:
            raise self.error(path, str(exc)) from exc

    def value(self, value: Any, path: str) -> Any:
        """`value` with every string in it rendered; containers are rebuilt, never shared."""
        if isinstance(value, str):
            return self.render(value, path)
        if isinstance(value, BaseModel):
            return self.model(value, path)
        if isinstance(value, list):
            return [self.value(item, f"{path}[{index}]") for index, item in enumerate(value)]
        if isinstance(value, dict):
            return self.mapping(value, path)
        return value

    def mapping(self, value: dict[Any, Any], path: str) -> dict[Any, Any]:
        """Keys are templates too; two keys that resolve to the same text are an error."""
        resolved: dict[Any, Any] = {}
        origin: dict[Any, Any] = {}
        for key, item in value.items():
            item_path = _join(path, str(key))
            new_key = self.render(key, f"{item_path} (key)") if isinstance(key, str) else key
            if new_key in resolved:
                raise self.error(
                    path,
                    f"keys {origin[new_key]!r} and {key!r} both resolve to {new_key!r}; "
                    "make them distinct",
                )
            origin[new_key] = key
            resolved[new_key] = self.value(item, item_path)
        return resolved

    def model(self, model: _M, path: str, skip: frozenset[str] = frozenset()) -> _M:
        """A deep copy of `model` with its fields and extra fields rendered, except `skip`."""
        update: dict[str, Any] = {}
        for name, info in type(model).model_fields.items():
            if name not in skip:
                current = getattr(model, name)
                resolved = self.value(current, _join(path, info.alias or name))
                if resolved != current:
                    update[name] = resolved
        for key, current in (model.model_extra or {}).items():
            resolved = self.value(current, _join(path, key))
            if resolved != current:
                update[key] = resolved
        return model.model_copy(update=update, deep=True)
