"""Parse the display names of rules and attacks back into ``(name, params)``.

A rule's ``.name`` reads ``krum[p=2]`` or ``bulyan[select=krum,aggregate=comed,p=2]``
(nested rules appear by their own name: ``bucketing[base=krum[p=2],s=2]``).
The game CLI and the probabilities file use these names, so they must round-trip:
``parse_spec(rule.name)`` gives the arguments of ``make_rule`` (plus ``f``); a nested
spec stays a string, which :func:`~mixtailor_game.rules.as_rule` parses in turn.
In the rules layer because ``as_rule`` reads specs; the game and the trainer use it.
"""

from __future__ import annotations

from .._checks import fail


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` characters that are not inside brackets or parentheses
    (a tuple value: ``random_eps[eps_set=(0.1, 10.0),probs=(0.5, 0.5)]``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth < 0:
                raise fail("spec", "brackets", "balanced", text)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise fail("spec", "brackets", "balanced", text)
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _value(text: str):
    if text.startswith("(") and text.endswith(")"):  # a tuple, as Python prints one
        return tuple(_value(item) for item in split_top_level(text[1:-1]))
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> tuple[str, dict]:
    """``"krum[p=2]"`` -> ``("krum", {"p": 2})``; ``"comed"`` -> ``("comed", {})``.

    Values become ``int``, ``float``, ``bool``, ``None``, tuples of them (``(0.1, 10.0)``)
    or stay strings (nested specs such as ``base=krum[p=2]`` stay strings).

    >>> parse_spec("bulyan[select=krum,aggregate=comed,p=2]")
    ('bulyan', {'select': 'krum', 'aggregate': 'comed', 'p': 2})
    """
    if not isinstance(text, str) or not text.strip():
        raise fail("spec", "spec", "a non-empty string such as 'krum[p=2]'", text)
    text = text.strip()
    if "[" not in text:
        if "]" in text or "=" in text:
            raise fail("spec", "spec", "of the form name or name[key=value,...]", text)
        return text, {}
    head, rest = text.split("[", 1)
    if not head or not rest.endswith("]"):
        raise fail("spec", "spec", "of the form name or name[key=value,...]", text)
    params = {}
    for item in split_top_level(rest[:-1]):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise fail("spec", "spec", "of the form name[key=value,...]", text)
        params[key.strip()] = _value(val.strip())
    return head.strip(), params
