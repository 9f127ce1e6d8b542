"""successCondition / failureCondition: Argo's expr conditions, evaluated safely by CEL.

Argo Rollouts writes conditions in expr (antonmedv/expr). We evaluate them with CEL (``cel-expr-python``, the
language of Kubernetes' own validation rules), which is sandboxed and has built-in budgets: no attribute escapes,
a recursion limit at compile time, an iteration budget at run time. Argo's documented conditions work unchanged
through a thin compatibility layer, done by rewriting *tokens*, never by parsing expr ourselves and never by
Python's eval:

- ``and`` / ``or`` / ``not`` become ``&&`` / ``||`` / ``!``; ``nil`` becomes ``null``; ``len(x)`` becomes
  ``size(x)``;
- ``isNaN``, ``isInf``, ``asFloat``, ``asInt`` and ``default`` are functions registered with CEL;
- numbers behave as in expr and JSON: a result's integers become doubles, and an integer literal next to
  ``+ - * /`` becomes a double literal, so ``result[0] * 100 > 95`` works (CEL refuses ``double * int``);
- ``result >= 0.95`` on a one-element vector (how Argo's docs write Prometheus conditions) is retried on the
  vector's single value when the list form has no meaning.

Bounds, so a hostile template cannot stall the controller: the source is capped at `MAX_SOURCE` characters and
`MAX_OPERATORS` operators, nesting at CEL's recursion limit (32, checked by a cheap scan before parsing);
comprehension macros (``all``, ``exists``, ``map``...) may not nest and their bodies may not read ``result``
(which would multiply its size); a result larger than `MAX_RESULT_ITEMS` values or `MAX_RESULT_CHARS` characters
is refused before evaluation. Within those, CEL's iteration budget (between one and two thousand steps in
cel-expr-python 0.1.3) stops any evaluation; measured worst case about 6 ms on a loaded 2-core machine.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from cel_expr_python import cel  # type: ignore[import-untyped]  # ships a .pyi but no py.typed marker

from headway.spec.load import Document, Problem

MAX_SOURCE = 1024
"""Longest condition accepted, in characters (docs/dependencies.md: about 1 KiB)."""
MAX_RESULT_ITEMS = 2_000
"""Most values (list items, map entries, scalars) a result may hold to be evaluated."""
MAX_RESULT_CHARS = 65_536
"""Most characters of text (strings and map keys together) a result may hold to be evaluated."""
MAX_OPERATORS = 64
"""Most binary operators in one condition: Argo's conditions use a handful; long chains only cost parse time."""
MAX_NESTING = 32
"""Deepest nesting of brackets or prefix operators (CEL's own recursion limit)."""
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
"""CEL's comprehension macros: the only constructs that loop."""


@dataclass(frozen=True)
class Compiled:
    """A condition ready to evaluate: the text the user wrote, the CEL it became, and the compiled program."""

    text: str
    cel: str
    program: Any = field(compare=False, repr=False)
    """A ``cel.Expression``."""


@dataclass(frozen=True)
class CompileError:
    """Why a condition cannot be used; ``position`` is a 0-based offset into the text the user wrote."""

    message: str
    position: int | None = None

    def describe(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"{self.message}{where}"


@dataclass(frozen=True)
class EvaluationError:
    """A condition that could not be decided for this result (the measurement becomes Error with the message)."""

    message: str


# --- the compatibility layer: token rewriting ------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>&&|\|\||==|!=|<=|>=|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_WORDS = {"and": "&&", "or": "||", "not": "!", "nil": "null", "len": "size"}
_ARITHMETIC = frozenset({"+", "-", "*", "/"})
_WORDISH = re.compile(r"[A-Za-z0-9_'\"]")


class _Token(NamedTuple):
    kind: str
    text: str
    start: int


def _tokens(text: str) -> list[_Token]:
    return [
        _Token(match.lastgroup or "other", match.group(), match.start())
        for match in _TOKEN.finditer(text)
        if match.lastgroup != "space"
    ]


def _is_operand(token: _Token | None) -> bool:
    return token is not None and (token.kind in {"name", "number", "string"} or token.text in {")", "]"})


def translate(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The CEL form of an expr condition, and (CEL offset, original offset) pairs for mapping error positions."""
    tokens = _tokens(text)
    pieces: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0
    for index, token in enumerate(tokens):
        before = tokens[index - 1] if index else None
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        out = token.text
        member = before is not None and before.text == "."
        if token.kind == "name" and not member and token.text in _WORDS:
            out = _WORDS[token.text]
        elif token.kind == "number" and _integer_literal(token.text):
            binary_before = before is not None and before.text in _ARITHMETIC and _is_operand(_at(tokens, index - 2))
            if binary_before or (after is not None and after.text in _ARITHMETIC):
                out = token.text + ".0"
        if pieces and _needs_space(pieces[-1], out):
            pieces.append(" ")
            length += 1
        offsets.append((length, token.start))
        pieces.append(out)
        length += len(out)
    return "".join(pieces), offsets


def _at(tokens: Sequence[_Token], index: int) -> _Token | None:
    return tokens[index] if 0 <= index < len(tokens) else None


def _integer_literal(text: str) -> bool:
    return text.isdigit()


def _needs_space(previous: str, current: str) -> bool:
    return bool(_WORDISH.match(previous[-1]) and _WORDISH.match(current[0]))


def _check_macros(tokens: Sequence[_Token]) -> CompileError | None:
    """Refuse nested comprehensions and comprehension bodies that read ``result`` (both multiply the work)."""
    depth = 0
    open_macros: list[int] = []
    for index, token in enumerate(tokens):
        before = _at(tokens, index - 1)
        after = _at(tokens, index + 1)
        is_macro = (
            token.kind == "name"
            and token.text in MACROS
            and before is not None
            and before.text == "."
            and after is not None
            and after.text == "("
        )
        if is_macro:
            if open_macros:
                return CompileError(f"nested comprehension '{token.text}' is not allowed", token.start)
            open_macros.append(depth + 1)
        elif token.text in "([{" and token.kind == "other":
            depth += 1
        elif token.text in ")]}" and token.kind == "other":
            if open_macros and open_macros[-1] == depth:
                open_macros.pop()
            depth -= 1
        elif open_macros and token.kind == "name" and token.text == "result" and (before is None or before.text != "."):
            return CompileError("a comprehension body may not read 'result' (use its iteration variable)", token.start)
    return None


# --- functions Argo's expr environment provides -----------------------------------------------------------

_T = cel.Type
_ARG_TYPES = (_T.DOUBLE, _T.INT, _T.UINT, _T.STRING, _T.BOOL, _T.NULL, _T.List(_T.DYN), _T.Map(_T.DYN, _T.DYN))
"""CEL dispatches a declared function only on concrete types, so each helper gets one overload per type."""


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _is_inf(value: object) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"asFloat: cannot convert {type(value).__name__} to a number")
    return float(value)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"asInt: cannot convert {type(value).__name__} to an integer")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"asInt: {value!r} is not finite")
    return int(number)


def _default(value: object, fallback: object) -> object:
    return fallback if value is None else value


def _declare(name: str, returns: cel.Type, impl: Callable[..., object], arity: int) -> cel.FunctionDecl:
    overloads = [
        cel.Overload(f"{name}_{'_'.join(str(i) for i in combo)}", returns, [_ARG_TYPES[i] for i in combo], impl=impl)
        for combo in itertools.product(range(len(_ARG_TYPES)), repeat=arity)
    ]
    return cel.FunctionDecl(name, overloads)


@lru_cache(maxsize=1)
def _env() -> cel.Env:
    functions = [
        _declare("isNaN", _T.BOOL, _is_nan, 1),
        _declare("isInf", _T.BOOL, _is_inf, 1),
        _declare("asFloat", _T.DYN, _as_float, 1),
        _declare("asInt", _T.DYN, _as_int, 1),
        _declare("default", _T.DYN, _default, 2),
    ]
    return cel.NewEnv(variables={"result": _T.DYN}, functions=functions)


# --- compile and evaluate ------------------------------------------------------------------------------

_OVERLOAD_ONLY = "found no matching overload"
_OPERATOR = re.compile(r"&&|\|\||==|!=|<=|>=|[-+*/%<>]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


def compile_condition(text: str) -> Compiled | CompileError:
    """Compile a condition once; the same text returns the same compiled program (cached)."""
    return _compile(text)


@lru_cache(maxsize=4096)
def _compile(text: str) -> Compiled | CompileError:
    if not text.strip():
        return CompileError("the condition is empty")
    if len(text) > MAX_SOURCE:
        return CompileError(f"the condition is {len(text)} characters long (at most {MAX_SOURCE})", MAX_SOURCE)
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:  # CEL takes UTF-8 text: a lone surrogate cannot even be handed to it
        return CompileError(f"U+{ord(surrogate.group()):04X} is not a valid character", surrogate.start())
    if _too_deep(text):
        return CompileError(f"the condition is nested too deeply (at most {MAX_NESTING} levels)")
    if len(_OPERATOR.findall(text)) > MAX_OPERATORS:
        return CompileError(f"the condition has more than {MAX_OPERATORS} operators")
    tokens = _tokens(text)
    refused = _check_macros(tokens)
    if refused is not None:
        return refused
    source, offsets = translate(text)
    try:
        program = _env().compile(source)
    except (TypeError, ValueError) as error:  # pragma: no cover - what CEL's binding refuses before parsing
        return CompileError(f"the condition cannot be compiled: {error}")
    except RuntimeError as error:
        if _OVERLOAD_ONLY not in str(error):
            return _compile_error(str(error), source, offsets)
        # The checker types `result[0] * 100.0` as double and refuses `double > int`, which CEL itself allows
        # at run time (numeric comparisons are heterogeneous); names and syntax were checked by now.
        try:
            program = _env().compile(source, disable_check=True)
        except RuntimeError as unchecked:
            return _compile_error(str(unchecked), source, offsets)
    return Compiled(text=text, cel=source, program=program)


def _too_deep(text: str) -> bool:
    """A cheap scan before any parsing: brackets or prefix operators nested beyond CEL's recursion limit."""
    depth = prefix = 0
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        prefix = prefix + 1 if char in "!-" else (prefix if char.isspace() else 0)
        if depth > MAX_NESTING or prefix > MAX_NESTING:
            return True
    return False


def _compile_error(raw: str, source: str, offsets: Sequence[tuple[int, int]]) -> CompileError:
    if "recursion limit" in raw or "max recursion" in raw.lower():
        return CompileError(f"the condition is nested too deeply (at most {MAX_NESTING} levels)")
    match = _CEL_POSITION.search(raw)
    if match is None:
        return CompileError(raw.split(" [", 1)[0].strip())
    line, column, message = int(match.group(1)), int(match.group(2)), match.group(3)
    message = message.split("\n", 1)[0].strip()
    if line < 1 or column < 1:
        return CompileError(message)
    lines = source.split("\n")
    absolute = sum(len(part) + 1 for part in lines[: line - 1]) + column - 1
    position = 0
    for cel_offset, original in offsets:
        if cel_offset > absolute:
            break
        position = original + (absolute - cel_offset)
    return CompileError(message, position)


def evaluate(compiled: Compiled, result: object) -> bool | EvaluationError:
    """Whether the condition holds for ``result`` (the provider's value); an EvaluationError when undecidable."""
    data = _normalise(result)
    if isinstance(data, EvaluationError):
        return data
    outcome = _run(compiled, data)
    if isinstance(outcome, EvaluationError) and isinstance(data, list) and len(data) == 1:
        # Argo's docs write `result >= 0.95` for Prometheus queries that return a one-sample vector.
        retried = _run(compiled, data[0])
        if not isinstance(retried, EvaluationError):
            return retried
    return outcome


def _run(compiled: Compiled, data: object) -> bool | EvaluationError:
    try:
        value = compiled.program.eval(data={"result": data})
    except RuntimeError as error:
        return EvaluationError(_clean(str(error)))
    kind = value.type()
    if kind == _T.ERROR:
        return EvaluationError(_clean(str(value.value())))
    if kind != _T.BOOL:
        return EvaluationError(f"the condition must be true or false, but gave a {kind.name()}")
    return bool(value.value())


def _clean(message: str) -> str:
    text = message.split(" [", 1)[0] if message.endswith("]") else message
    for prefix in ("UNKNOWN: ", "INTERNAL: ", "INVALID_ARGUMENT: ", "NOT_FOUND: ", "OUT_OF_RANGE: "):
        text = text.removeprefix(prefix)
    return text.strip() or "the condition could not be evaluated"


def _normalise(result: object) -> object:
    """The result as CEL should see it: JSON-like, integers as doubles, and not too large to evaluate quickly."""
    if result is None or (isinstance(result, bool | float | str) and not _long(result)):
        return result
    if isinstance(result, list) and len(result) <= MAX_RESULT_ITEMS and all(type(v) is float for v in result):
        return result  # the common Prometheus vector, already in shape
    budget = [MAX_RESULT_ITEMS, MAX_RESULT_CHARS]

    def walk(value: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLargeError(f"the result has more than {MAX_RESULT_ITEMS} values")
        if depth > 16:
            raise _TooLargeError("the result is nested more than 16 levels deep")
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            return _as_double(value)
        if isinstance(value, str):
            budget[1] -= len(value)
            if budget[1] < 0:
                raise _TooLargeError(f"the result holds more than {MAX_RESULT_CHARS} characters of text")
            return value
        if isinstance(value, Mapping):
            return {str(walk(str(key), depth + 1)): walk(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, depth + 1) for item in value]
        raise _TooLargeError(f"a result of type {type(value).__name__} cannot be evaluated")

    try:
        return walk(result, 0)
    except _TooLargeError as error:
        return EvaluationError(str(error))


def _as_double(value: int) -> float:
    """An integer of the result as the double expr and JSON make it; one beyond a double's range (a provider can
    parse a 400-digit JSON number) is undecidable, not an OverflowError out of `evaluate`."""
    try:
        return float(value)
    except OverflowError:
        raise _TooLargeError("the result holds an integer too large for a number") from None


def _long(value: object) -> bool:
    return isinstance(value, str) and len(value) > MAX_RESULT_CHARS


class _TooLargeError(Exception):
    pass


def check_condition(text: str) -> str | None:
    """For lint: None when the condition compiles, else a message with its position."""
    compiled = compile_condition(text)
    return compiled.describe() if isinstance(compiled, CompileError) else None


def lint_conditions(documents: Sequence[Document]) -> list[Problem]:
    """Lint hook: a problem for every successCondition/failureCondition of a lint set that does not compile.

    Conditions holding ``{{args.NAME}}`` placeholders are checked once a run fills them in, not here."""
    problems: list[Problem] = []
    for document in documents:
        model = document.model
        spec = getattr(model, "spec", None)
        metrics = getattr(spec, "metrics", None)
        if not isinstance(metrics, list):
            continue
        for index, metric in enumerate(metrics):
            for field_name, text in (
                ("successCondition", getattr(metric, "success_condition", None)),
                ("failureCondition", getattr(metric, "failure_condition", None)),
            ):
                if not isinstance(text, str) or "{{" in text:
                    continue
                message = check_condition(text)
                if message is not None:
                    path = f"spec.metrics[{index}].{field_name}"
                    problems.append(
                        Problem(
                            file=document.file,
                            kind=document.kind,
                            name=document.name,
                            path=path,
                            message=message,
                            document=document.index,
                            line=document.lines.get(path),
                        )
                    )
    return problems
