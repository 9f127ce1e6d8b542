"""YAML text → manifests, with every problem reported against the field the user wrote.

Why this module exists rather than ``Model.model_validate``: users read errors in terms of their YAML, not of
our Python classes. Every `Problem` names the file, the object (``Rollout/web``) and the wire path
(``spec.strategy.canary.steps[2].setWeight``), and says what is wrong with the value given and what is
allowed. pydantic's messages are translated here, in one place, so the models can keep raising short
``ValueError``s.

The module does no I/O: it takes text and a display name (`headway.manifest_files` reads files). A malformed
document never raises: YAML syntax errors become problems carrying the line and column, and other documents of
the same file are still loaded. Every YAML text Headway reads goes through `_Loader`, under `Limits` counted
while it parses, so that no input (an alias bomb, a million documents, deep nesting) costs more than the
limits allow; values are read as the API server reads them after its YAML-to-JSON step.

Unknown fields are kept by the models (``extra="allow"``) and reported here as warnings, like Kubernetes does:
they are found by walking the input against the model classes, so they are reported even when the same
document also has errors (a misspelt ``setWieght`` is the most useful hint next to "set exactly one of …").
Wire names are matched exactly: a snake_case key is an unknown field, as it would be for the API server.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml._yaml import CParser  # PyYAML's libyaml binding
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from headway.spec import names
from headway.spec.analysis import AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate
from headway.spec.base import API_GROUPS, API_VERSIONS, ObjectMeta, show
from headway.spec.experiment import Experiment
from headway.spec.rollout import Rollout

Manifest: TypeAlias = Rollout | AnalysisTemplate | ClusterAnalysisTemplate | AnalysisRun | Experiment
"""Any object Headway reads."""

KINDS: Mapping[str, type[Manifest]] = {
    "Rollout": Rollout,
    "AnalysisTemplate": AnalysisTemplate,
    "ClusterAnalysisTemplate": ClusterAnalysisTemplate,
    "AnalysisRun": AnalysisRun,
    "Experiment": Experiment,
}
"""The explicit kind registry: a kind missing here is an error naming the known ones, never a guess."""


class Severity(StrEnum):
    """Errors make `headway lint` fail; warnings (unknown fields) are printed but do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as the input allows.

    ``document`` is the 1-based position in a multi-document file (0 when the problem is about the file as a
    whole); ``line`` is 1-based when known, for editors and ``--json``.
    """

    file: str
    kind: str
    name: str
    path: str
    message: str
    severity: Severity = Severity.ERROR
    document: int = 0
    line: int | None = None

    @property
    def is_error(self) -> bool:
        """Whether this problem should fail a lint run."""
        return self.severity is Severity.ERROR

    def render(self) -> str:
        """``FILE: KIND/NAME: FIELD.PATH: message``; parts that are not known are left out."""
        parts = [self.file]
        if self.kind:
            parts.append(f"{self.kind}/{self.name or '(unnamed)'}")
        elif self.document:
            parts.append(f"document {self.document}")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form, with the severity as a plain string."""
        return {
            "file": self.file,
            "document": self.document,
            "line": self.line,
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "severity": str(self.severity),
            "message": self.message,
        }


@dataclass(frozen=True)
class Document:
    """One YAML document of a file: the model when it is valid, and the problems found either way.

    ``model`` is None when the document has errors or is not a Headway kind (``skipped``: a Service or a
    Deployment next to the Rollout is normal, and is not ours to judge).
    """

    file: str
    index: int
    kind: str
    name: str
    data: Mapping[str, Any] | None
    model: Manifest | None
    problems: tuple[Problem, ...] = ()
    skipped: bool = False
    lines: Mapping[str, int] = field(default_factory=dict, repr=False)


class SpecError(ValueError):
    """Raised by `parse` when a manifest has errors; carries every problem, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problem.render() for problem in self.problems))


# --- public entry points -------------------------------------------------------------------------------------


def load_text(text: str, file: str = "<input>", limits: Limits | None = None) -> list[Document]:
    """Every document of a (multi-document) YAML text, loaded and checked field by field.

    Never raises for bad input: a YAML syntax error, a control character or a text beyond `limits` (size,
    documents, nodes, nesting, aliases; checked while the text is parsed, so a hostile text costs no more than
    the limits allow) ends the file with a problem carrying its line, after the documents loaded before it.
    """
    documents: list[Document] = []
    index = 0
    try:
        for node, data, duplicates in _parse(text, limits or Limits()):
            index += 1
            if data is None:  # an empty document, e.g. after a trailing ---
                continue
            lines = _line_index(node)
            located = _locate_keys(node, duplicates) if duplicates else ()
            documents.append(_load(data, file=file, index=index, lines=lines, duplicates=located))
    except _UnreadableError as refused:
        problem = replace(refused.problem, file=file)
        documents.append(Document(file, index + 1, "", "", None, None, (problem,)))
    return documents


def load_yaml(text: str, file: str = "<input>", limits: Limits | None = None) -> list[Any]:
    """The decoded documents of a YAML text that is not a manifest (a config file), read by the same loader
    and under the same `Limits` as manifests; `SpecError` locating a syntax error or a limit that was hit."""
    try:
        return [data for _, data, _ in _parse(text, limits or Limits())]
    except _UnreadableError as refused:
        raise SpecError([replace(refused.problem, file=file)]) from None


def load_document(data: object, *, file: str = "<input>", index: int = 1) -> Document:
    """One already-decoded document (from JSON, an API watch, a test) checked like `load_text` would."""
    return _load(data, file=file, index=index, lines={}, duplicates=())


def parse(data: object, *, file: str = "<input>") -> Manifest:
    """The model of one decoded manifest, or `SpecError` with every error (warnings are not errors)."""
    document = load_document(data, file=file)
    errors = [problem for problem in document.problems if problem.is_error]
    if errors or document.model is None:
        raise SpecError(errors or document.problems)
    return document.model


def problems_of(documents: Sequence[Document]) -> list[Problem]:
    """All problems of the documents, in file and document order."""
    return [problem for document in documents for problem in document.problems]


# --- YAML with line numbers and duplicate keys -------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How much YAML one load may hold, so a hostile text (an alias bomb, a million documents, deep nesting) is
    refused in bounded time and memory instead of being expanded.

    The defaults are generous for real manifests (Argo's biggest examples are a few hundred nodes and under
    ten levels deep; a bundle of a hundred Rollouts stays far below) and keep `headway lint` of any input
    under about two seconds and 256 MB. Each can be raised with the environment variable in `ENVIRONMENT`.
    """

    max_bytes: int = 1024 * 1024
    """Size of one input (a file, standard input, a request body), in UTF-8 bytes."""
    max_documents: int = 1000
    """YAML documents (``---``-separated) in one input, empty ones included."""
    max_nodes: int = 50_000
    """Scalars, lists and mappings in one input, an alias counting as a copy of everything it refers to."""
    max_depth: int = 64
    """Nesting of lists and mappings."""
    max_aliases: int = 1000
    """Aliases (``*name``, merge keys included) in one input."""

    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "max_bytes": "HEADWAY_MAX_MANIFEST_BYTES",
        "max_documents": "HEADWAY_MAX_MANIFEST_DOCUMENTS",
        "max_nodes": "HEADWAY_MAX_MANIFEST_NODES",
        "max_depth": "HEADWAY_MAX_MANIFEST_DEPTH",
        "max_aliases": "HEADWAY_MAX_MANIFEST_ALIASES",
    }
    """The environment variable that overrides each limit."""

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> Limits:
        """The defaults, overridden by any `ENVIRONMENT` variable set; ValueError naming a bad one."""
        limits = cls()
        for name, variable in cls.ENVIRONMENT.items():
            raw = environment.get(variable)
            if raw is None or not raw.strip():
                continue
            text = raw.strip().replace("_", "")
            if not text.isdigit() or len(text) > 12 or int(text) < 1:
                raise ValueError(f"{variable}={raw!s}: expected a positive integer")
            limits = replace(limits, **{name: int(text)})
        return limits

    def exceeded(self, name: str, what: str) -> str:
        """The message for a limit that was hit: what was found, the limit, and how to raise it."""
        return (
            f"{what}: over the limit ({name.removeprefix('max_')} = {getattr(self, name)}; "
            f"set {self.ENVIRONMENT[name]} to raise it if this input is genuine)"
        )


class LimitExceeded(yaml.YAMLError):
    """A limit of `Limits` was hit while parsing; carries the 1-based line where it was."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What YAML 1.1 does not allow in a text (control characters, NUL, lone surrogates): refused up front with
its line and column, where PyYAML would raise an unlocated ReaderError."""
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_INT_DIGITS = 64
"""Longer integers are refused when read: no field takes them, and Python refuses ``int()`` of 4300 digits."""


class _Loader(Composer, CParser, SafeConstructor, Resolver):
    """libyaml's parser (fast, with line numbers) under PyYAML's composer, counting, and a safe constructor.

    The composer counts as it builds the node graph, so `Limits` are enforced while parsing. An alias counts
    as a copy of the node it refers to: that is what every later step (checking the fields, walking the lines,
    validating the models) would otherwise expand, which is how a 300-byte alias bomb became gigabytes.
    (Composer comes first so that its Python ``compose_*`` methods, not libyaml's, build the nodes.)

    The constructor reads values as the API server would after its YAML-to-JSON step: timestamps stay strings
    (``2024-01-01`` is not a date to Kubernetes), ``!!set`` becomes a mapping, merge keys (``<<: *common``)
    are merged. It remembers duplicate mapping keys instead of silently keeping the last one: the API server
    rejects duplicate fields in strict mode, and a repeated ``setWeight`` would otherwise disappear.
    """

    def __init__(self, stream: str, limits: Limits) -> None:
        CParser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self.limits = limits
        self.nodes = self.depth = self.aliases = self.document_count = 0
        self.anchor_sizes: dict[str, int] = {}
        self.open_anchors: set[str] = set()
        """Anchors whose node is still being composed: an alias to one of them would make a cycle."""
        self.duplicates: list[tuple[str, int]] = []

    def _refuse(self, name: str, what: str, mark: Any) -> LimitExceeded:
        line = mark.line + 1 if mark is not None else None
        where = f" at line {line}" if line is not None else ""
        return LimitExceeded(self.limits.exceeded(name, what + where), line)

    def compose_document(self) -> yaml.Node | None:
        self.document_count += 1
        if self.document_count > self.limits.max_documents:
            mark = getattr(self.peek_event(), "start_mark", None)
            raise self._refuse("max_documents", f"more than {self.limits.max_documents} documents", mark)
        node: yaml.Node | None = super().compose_document()
        return node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        mark = getattr(event, "start_mark", None)
        if isinstance(event, AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise self._refuse("max_aliases", f"more than {self.limits.max_aliases} aliases", mark)
            if event.anchor in self.open_anchors:  # `a: &x {b: *x}`: a cycle every walker would recurse into
                raise ComposerError(None, None, f"alias *{event.anchor} refers to the node it is inside", mark)
            self._count(self.anchor_sizes.get(event.anchor or "", 1), mark)
            alias: yaml.Node | None = super().compose_node(parent, index)
            return alias
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self._refuse("max_depth", f"nesting deeper than {self.limits.max_depth} levels", mark)
        before = self.nodes
        self._count(1, mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.open_anchors.add(anchor)
        node: yaml.Node | None = super().compose_node(parent, index)
        self.depth -= 1
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchor_sizes[anchor] = self.nodes - before
        return node

    def _count(self, nodes: int, mark: Any) -> None:
        self.nodes += nodes
        if self.nodes > self.limits.max_nodes:
            what = f"more than {self.limits.max_nodes} YAML nodes (an alias counts as a copy of what it names)"
            raise self._refuse("max_nodes", what, mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # A key is known by its tag and text: cheap, and `1` differs from `"1"` as it does for the API.
            # Merge keys are not keys, and lists or mappings as keys are refused by the constructor.
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                self.duplicates.append((str(key_node.value), key_node.start_mark.line + 1))
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(str(node.value)) > _MAX_INT_DIGITS:
            raise ConstructorError(
                None, None, f"an integer of {len(str(node.value))} digits is too large", node.start_mark
            )
        value: int = super().construct_yaml_int(node)
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        # A YAML 1.1 base-60 float (``1:1:…:1.5``) of a few hundred parts overflows inside PyYAML.
        try:
            value: float = super().construct_yaml_float(node)
        except OverflowError:
            raise ConstructorError(None, None, "a number too large for a float", node.start_mark) from None
        return value

    def construct_as_text(self, node: yaml.ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def construct_as_mapping(self, node: yaml.Node) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        if isinstance(node, yaml.MappingNode):
            data.update(self.construct_mapping(node))
        else:
            raise ConstructorError(None, None, f"expected a mapping for {node.tag}", node.start_mark)

    def construct_as_list(self, node: yaml.Node) -> Iterator[list[Any]]:
        data: list[Any] = []
        yield data
        if isinstance(node, yaml.SequenceNode):
            data.extend(self.construct_sequence(node))
        else:
            raise ConstructorError(None, None, f"expected a list for {node.tag}", node.start_mark)


for _tag, _constructor in (
    ("tag:yaml.org,2002:int", _Loader.construct_yaml_int),
    ("tag:yaml.org,2002:float", _Loader.construct_yaml_float),
    ("tag:yaml.org,2002:timestamp", _Loader.construct_as_text),
    ("tag:yaml.org,2002:binary", _Loader.construct_as_text),
    ("tag:yaml.org,2002:set", _Loader.construct_as_mapping),
    ("tag:yaml.org,2002:omap", _Loader.construct_as_list),
    ("tag:yaml.org,2002:pairs", _Loader.construct_as_list),
):
    _Loader.add_constructor(_tag, _constructor)  # type: ignore[type-var]  # the stubs expect a plain Loader


class _UnreadableError(Exception):
    """Why a text could not be parsed (any further), as a file-level problem."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.problem = Problem("", "", "", "", message, line=line)


def _parse(text: str, limits: Limits) -> Iterator[tuple[yaml.Node, Any, tuple[tuple[str, int], ...]]]:
    """(node, data, duplicate keys) of each document in turn; `_UnreadableError` when the text cannot be read on."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise _UnreadableError(limits.exceeded("max_bytes", f"the input is {size} bytes long"), None)
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - text.rfind("\n", 0, bad.start())
        message = f"invalid YAML at line {line}, column {column}: character U+{ord(bad.group()):04X} is not allowed"
        raise _UnreadableError(message, line)
    loader = _Loader(text, limits)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() promised a node
                break
            loader.duplicates.clear()
            data = loader.construct_document(node)
            yield node, data, tuple(loader.duplicates)
    except LimitExceeded as exc:
        raise _UnreadableError(str(exc), exc.line) from None
    except yaml.MarkedYAMLError as exc:
        raise _UnreadableError(*_yaml_message(exc, text)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - libyaml marks its errors; kept so that none escapes
        raise _UnreadableError(f"invalid YAML: {exc}", None) from None
    except RecursionError:  # pragma: no cover - max_depth stops nesting long before Python's stack does
        raise _UnreadableError(limits.exceeded("max_depth", "the input is nested too deeply"), None) from None
    finally:
        loader.dispose()


def _line_index(node: yaml.Node, path: str = "") -> dict[str, int]:
    """Wire path → 1-based line of every value in a document, so problems can point into the file."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines.update(_line_index(value_node, child))
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, f"{path}[{i}]"))
    return lines


def _locate_keys(node: yaml.Node, keys: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """(wire path, line) of each (mapping key, line), found in one walk of the document: a file of thousands
    of duplicate keys must not cost a scan of every line per key."""
    paths: dict[tuple[str, int], str] = {}
    pending: list[tuple[yaml.Node, str]] = [(node, "")]
    while pending:
        current, path = pending.pop()
        if isinstance(current, yaml.MappingNode):
            children: list[tuple[yaml.Node, str]] = []
            for key_node, value_node in current.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                paths.setdefault((key, key_node.start_mark.line + 1), child)
                children.append((value_node, child))
        elif isinstance(current, yaml.SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(current.value)]
        else:
            continue
        pending.extend(reversed(children))  # popped in document order
    return [(paths.get((key, line), key), line) for key, line in keys]


def _yaml_message(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, int | None]:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "could not parse"
    if mark is None:  # pragma: no cover - libyaml marks its parser errors
        return f"invalid YAML: {what}", None
    # No document number: the line and column say more, and the number of a document that failed to parse
    # is a guess anyway.
    line, column = mark.line + 1, mark.column + 1
    if what == "found character that cannot start any token":  # libyaml does not say which (a tab, mostly)
        lines = text.split("\n", mark.line + 1)
        if mark.line < len(lines) and mark.column < len(lines[mark.line]):
            what = f"found character {lines[mark.line][mark.column]!r} that cannot start any token"
    return f"invalid YAML at line {line}, column {column}: {what}", line


# --- one document ------------------------------------------------------------------------------------------------


def _load(
    data: object,
    *,
    file: str,
    index: int,
    lines: Mapping[str, int],
    duplicates: Sequence[tuple[str, int]],
) -> Document:
    def problem(path: str, message: str, severity: Severity = Severity.ERROR, *, kind: str = "") -> Problem:
        return Problem(file, kind, name, path, message, severity, index, _line_of(lines, path))

    name = ""
    if not isinstance(data, dict):
        found = problem("", f"expected a mapping (a Kubernetes object), got {_describe(data)}")
        return Document(file, index, "", "", None, None, (found,), lines=lines)
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        name = metadata["name"]
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    kind_text = kind if isinstance(kind, str) else ""
    found_problems: list[Problem] = [
        problem(path, "duplicate key (only the last value is used)", kind=kind_text) for path, _ in duplicates
    ]

    header = _check_header(api_version, kind)
    if header is None:
        return Document(file, index, kind_text, name, data, None, tuple(found_problems), skipped=True, lines=lines)
    if header:
        found_problems.extend(problem(path, message, kind=kind_text) for path, message in header)
        return Document(file, index, kind_text, name, data, None, tuple(found_problems), lines=lines)

    cls = KINDS[kind_text]
    model: Manifest | None = None
    errors: list[tuple[str, str]] = []
    try:
        model = cls.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        errors = _translate(exc.errors(), data)
    if isinstance(metadata, dict) and not name and not metadata.get("generateName"):
        errors.append(("metadata.name", "required field is missing"))
        model = None
    if model is not None:
        errors.extend(names.metadata_problems(model.metadata.name, model.metadata.namespace))
        model = None if errors else model
    found_problems.extend(problem(path, message, kind=kind_text) for path, message in errors)
    found_problems.extend(
        problem(path, message, Severity.WARNING, kind=kind_text)
        for path, message in _unknown_fields(cls, data, "", _by_path(errors))
    )
    # Reading order: the user fixes a file top to bottom.
    found_problems.sort(key=lambda found: found.line or 0)
    return Document(file, index, kind_text, name, data, model, tuple(found_problems), lines=lines)


def _check_header(api_version: object, kind: object) -> list[tuple[str, str]] | None:
    """Problems with apiVersion/kind; None for another API group's object (a Service, a Deployment)."""
    ours = isinstance(kind, str) and kind in KINDS
    if isinstance(api_version, str) and api_version.split("/")[0] not in API_GROUPS and not ours:
        return None
    found: list[tuple[str, str]] = []
    allowed = ", ".join(API_VERSIONS)
    if api_version is None:
        found.append(("apiVersion", f"required field is missing (use one of {allowed})"))
    elif not isinstance(api_version, str):
        found.append(("apiVersion", f"expected a string, got {_describe(api_version)} (use one of {allowed})"))
    elif api_version not in API_VERSIONS:
        found.append(("apiVersion", f"{show(api_version)} is not supported (use one of {allowed})"))
    known = ", ".join(KINDS)
    if kind is None:
        found.append(("kind", f"required field is missing (one of {known})"))
    elif not isinstance(kind, str):
        found.append(("kind", f"expected a string, got {_describe(kind)} (one of {known})"))
    elif not ours:
        found.append(("kind", f"{show(kind)} is not a known kind (known: {known})"))
    return found


def _line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest ancestor that is in the file (a missing field's parent)."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""


# --- pydantic errors → messages --------------------------------------------------------------------------------


def _translate(errors: Sequence[ErrorDetails], data: object) -> list[tuple[str, str]]:
    """(wire path, message) for each pydantic error, one per path (union members repeat themselves)."""
    found: dict[str, str] = {}
    for error in errors:
        path = _wire_path(error["loc"], data, missing=error["type"] == "missing")
        found.setdefault(path, _message(error))
    return list(found.items())


def _wire_path(loc: tuple[int | str, ...], data: object, *, missing: bool) -> str:
    """The path as the user wrote it, guided by the input: loc entries that are not in the data (union member
    tags such as ``int`` or ``function-after[...]``) are dropped, except a missing field's own name."""
    path = ""
    current = data
    for position, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            path = _join(path, part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path = f"{path}[{part}]"
            current = current[part]
        elif missing and position == len(loc) - 1 and isinstance(part, str):
            path = _join(path, part)
    return path


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind in {"model_type", "model_attributes_type", "dict_type", "mapping_type"}:
        return f"expected a mapping, got {_describe(value)}"
    if kind in {"list_type", "tuple_type", "set_type"}:
        return f"expected a list, got {_describe(value)}"
    if kind in {"string_type", "string_sub_type"}:
        hint = " (quote it)" if isinstance(value, int | float) else ""
        return f"expected a string, got {_describe(value)}{hint}"
    if kind in {"int_type", "int_parsing", "int_from_float", "int_parsing_size"}:
        return f"{show(value)} is not an integer"
    if kind in {"float_type", "float_parsing"}:
        return f"{show(value)} is not a number"
    if kind in {"bool_type", "bool_parsing"}:
        return f"{show(value)} is not a boolean (use true or false)"
    if kind in {"literal_error", "enum"}:
        return f"{show(value)} is not one of {str(ctx.get('expected', '')).replace(chr(39), chr(34))}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"must be at least {ctx['min_length']} long"
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        return f"must have at least {minimum} item{'s' if minimum != 1 else ''}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int):
        return f"an integer ({show(value)})"
    if isinstance(value, float):
        return f"a number ({show(value)})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    return type(value).__name__  # pragma: no cover - YAML yields only the types above


# --- unknown fields ------------------------------------------------------------------------------------------------


def _unknown_fields(
    cls: type[BaseModel], data: object, path: str, errors: Mapping[str, Sequence[str]]
) -> Iterator[tuple[str, str]]:
    """(path, message) for every key of `data` that `cls` (or a nested model) does not declare.

    ObjectMeta is open on purpose: Kubernetes metadata has many fields (generateName, ownerReferences,
    finalizers…) that Headway does not read but that are perfectly valid.
    """
    if not isinstance(data, dict) or cls is ObjectMeta:
        return
    fields = {(info.alias or name): info.annotation for name, info in cls.model_fields.items()}
    for key, value in data.items():
        child = _join(path, key)
        if key not in fields:
            if not _already_reported(path, key, errors):
                yield child, _unknown_message(str(key), fields)
            continue
        for model in _models_in(fields[key], value):
            yield from _walk(model, value, child, errors)


def _walk(annotation: Any, value: object, path: str, errors: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, str]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _unknown_fields(annotation, value, path, errors)
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args and isinstance(value, list):
        for i, item in enumerate(value):
            for inner in _models_in(args[0], item):
                yield from _walk(inner, item, f"{path}[{i}]", errors)
    elif origin is dict and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            for inner in _models_in(args[1], item):
                yield from _walk(inner, item, _join(path, key), errors)


def _models_in(annotation: Any, value: object) -> list[Any]:
    """The members of a (possibly Optional/Annotated) annotation that could describe `value`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0], value)
    if origin is typing.Union or origin is types.UnionType:
        members: list[Any] = []
        for arg in typing.get_args(annotation):
            members.extend(_models_in(arg, value))
        return members[:1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation] if isinstance(value, dict) else []
    if origin in (list, dict):
        return [annotation]
    return []


def _by_path(errors: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The error messages at each path, so that every unknown key looks up its own mapping's errors instead of
    scanning all of them (thousands of bad steps, each with an unknown key, were quadratic)."""
    found: dict[str, list[str]] = {}
    for path, message in errors:
        found.setdefault(path, []).append(message)
    return found


def _already_reported(path: str, key: object, errors: Mapping[str, Sequence[str]]) -> bool:
    """Whether an error at the enclosing mapping already names this key (e.g. an unknown metric provider)."""
    return any(repr(key) in message for message in errors.get(path, ()))


def _unknown_message(key: str, fields: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field (ignored){hint}"
