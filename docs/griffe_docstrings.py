"""A griffe extension that lets mkdocstrings render afr-aug's docstrings as they are written.

afr-aug's docstrings are Google style (``Args:``, ``Example:``) with reST habits: Sphinx roles
(``:class:`LongTailSampler```), doctest examples in the running text and parameters that share
a description (``num_replicas, rank: the shard``). Before griffe parses a docstring, this
extension rewrites (for the docs only; the source stays as it is):

- a Sphinx role into a code span (``:func:`~afr_aug.metrics.evaluate``` -> ``evaluate``);
- ``Example:`` into ``Examples:``, the section griffe reads doctests from;
- a doctest in the running text (a ``>>>`` line at the docstring's margin, up to the next
  blank line) into a fenced ``pycon`` block;
- ``a, b: text`` in a parameters section into one entry per name.

Loaded by ``mkdocs.yml`` (mkdocstrings' python handler, ``extensions``); kept out of the built
site by ``exclude_docs``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLES = "class|func|meth|attr|mod|data|exc|obj|const|math|ref|term"
_ROLE = re.compile(rf":(?:py:)?(?:{_ROLES}):`(~?)([^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")
_PARAMS = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params):\s*$")
_SHARED = re.compile(r"^(\s+)(\w+(?:\s*,\s*\w+)+):(\s.*)?$")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _rewrite(text: str) -> str:
    lines = _ROLE.sub(_role, text).splitlines()
    out: list[str] = []
    i, params_indent = 0, None
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if line.strip() and params_indent is not None and indent <= params_indent:
            params_indent = None
        if _PARAMS.match(line):
            params_indent = indent
        elif params_indent is not None and (shared := _SHARED.match(line)):
            lead, names, rest = shared.group(1), shared.group(2), shared.group(3) or ""
            if len(lead) == params_indent + 4:
                i += 1
                more = []  # the description's continuation lines, repeated for every name
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(lead)
                ):
                    more.append(lines[i])
                    i += 1
                while more and not more[-1].strip():
                    more.pop()
                    i -= 1
                for name in names.split(","):
                    out.extend([f"{lead}{name.strip()}:{rest}", *more])
                continue
        if _EXAMPLE.match(line):
            out.append(_EXAMPLE.sub(r"\1Examples:", line))
        elif line.startswith(">>>"):
            out.append("```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append("```")
            continue
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


class DocstringMarkdown(griffe.Extension):
    """Rewrites each docstring as described in the module's docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        # called once per object, as griffe creates it with its docstring (griffe 0.47 to 2.x)
        if obj.docstring is not None:
            obj.docstring.value = _rewrite(obj.docstring.value)
