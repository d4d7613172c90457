"""One validation helper and one message format for user input.

Every message reads ``"<where>: <param> must be <constraint>, got <value>"``
(or ``"<where>: needs <condition>, got n=.., f=.."`` for regimes), so tests can
match it and users see the parameter, the constraint and the value on one line.
"""

from __future__ import annotations

import math
from numbers import Integral, Rational, Real

import torch


_HUGE = 10**50


def show_value(value, text=repr) -> str:
    """``text(value)`` (``repr`` or ``str``), except an integer or fraction with 50 digits
    or more (Python refuses to print ints past 4,300 digits), shown as
    "an int of about 1e+400"."""
    if isinstance(value, Rational) and not isinstance(value, bool):
        num, den = int(value.numerator), int(value.denominator)
        if abs(num) >= _HUGE or den >= _HUGE:
            if num == 0:
                return text(value)
            e = math.log10(abs(num)) - math.log10(den)
            exponent = math.floor(e)
            mantissa = 10.0 ** (e - exponent)
            kind = "an int" if isinstance(value, Integral) else f"a {type(value).__name__}"
            return f"{kind} of about {'-' if num < 0 else ''}{mantissa:.3g}e{exponent:+d}"
    return text(value)


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError`` a user caused, naming the path: ``[Errno 17] File
    exists: 'bad.json'`` said nothing of an ``--out`` that is a file."""
    name = exc.filename
    if name is None:
        return str(exc)
    if isinstance(exc, FileExistsError):
        return f"{str(name)!r} is a file, not a directory"
    if isinstance(exc, NotADirectoryError):
        return f"a folder above {str(name)!r} is a file"
    if isinstance(exc, IsADirectoryError):
        return f"{str(name)!r} is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"{str(name)!r}: permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"{str(name)!r}: no such file or directory"
    return f"{str(name)!r}: {exc.strerror or exc}"


def fail(where: str, param: str, constraint: str, value) -> ValueError:
    """Build the project's one-line ``ValueError`` (raise the result)."""
    return ValueError(f"{where}: {param} must be {constraint}, got {show_value(value)}")


def check_int(where: str, param: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{where}: {param} must be an integer, got {show_value(value)}")
    value = int(value)
    if low is not None and value < low:
        raise fail(where, param, f">= {low}", value)
    if high is not None and value > high:
        raise fail(where, param, f"<= {high}", value)
    return value


def check_real(
    where: str,
    param: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Return ``value`` as a ``float`` after checking it is finite and in range.

    A number too large for a float (a huge ``int`` or ``Fraction``) fails as
    "finite", or becomes ``inf`` / ``-inf`` under ``allow_inf``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{where}: {param} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        if not allow_inf:
            raise fail(where, param, "finite", value) from None
        value = math.inf if value > 0 else -math.inf
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise fail(where, param, "finite", value)
    if low is not None:
        if low_open and not value > low:
            raise fail(where, param, f"> {low:g}", value)
        if not low_open and value < low:
            raise fail(where, param, f">= {low:g}", value)
    if high is not None:
        if high_open and not value < high:
            raise fail(where, param, f"< {high:g}", value)
        if not high_open and value > high:
            raise fail(where, param, f"<= {high:g}", value)
    return value


def check_regime(where: str, ok: bool, condition: str, n: int, f: int, name: str = "f") -> None:
    """Raise ``ValueError("krum: needs n > 2f + 2, got n=6, f=2")`` unless ``ok``
    (``name``: what the condition calls ``f``, e.g. the trimmed mean's ``b``)."""
    if not ok:
        raise ValueError(f"{where}: needs {condition}, got n={show_value(n, str)}, {name}={show_value(f, str)}")


def as_gradients(G, where: str, name: str = "G", rows: str = "n") -> torch.Tensor:
    """Check that ``G`` is a floating 2-D tensor ``(n, d)`` with n, d >= 1; errors call it
    ``name`` with ``rows`` rows (the solvers' ``honest`` has ``k`` rows)."""
    shape = f"({rows}, d)"
    if not isinstance(G, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor of shape {shape}, got {type(G).__name__}")
    if G.dim() != 2:
        raise fail(where, name, f"2-D of shape {shape}", tuple(G.shape))
    if not G.is_floating_point():
        raise TypeError(f"{where}: {name} must have a floating dtype, got {G.dtype}")
    if G.shape[0] < 1 or G.shape[1] < 1:
        raise fail(where, name, f"non-empty ({rows} >= 1, d >= 1)", tuple(G.shape))
    return G
