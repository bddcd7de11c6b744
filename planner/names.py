"""The one name validator: every name or identifier soraplan writes into a shell script, an `#SBATCH` line or
a Kubernetes manifest is checked here with `re.fullmatch` and an explicit length limit.

`re.fullmatch` (never `re.match` with `$`, which also matches before a final newline) and the length checked
before the pattern. Two kinds of name:

- the **display name** (the Spec's `name`, e.g. "DiT-XL/2"): any printable text of 1 to 128 characters —
  no control or format characters (newline, tab, escape, bidi overrides), no line or paragraph separators.
  It is only ever shown: in tables, reports and the sbatch script's first comment line, which additionally
  goes through `comment_text`.
- the **run name** (`launch.name` / `--name` when launching): a strict slug of 1 to 63 characters, letters,
  digits, '.', '_' and '-', starting with a letter or digit. It becomes the Slurm job name, the run directory
  and (through launch/k8s_names.object_name) the Kubernetes object names, so nothing in it needs quoting.

Backends add their own rules (`NameRule`s in launch/slurm_script.py and launch/k8s_names.py) and check them
through `matches` / `check`. It lives in the planner because the Spec validates its own name with it; it imports
only the standard library and planner/errors.py.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from soraplan.planner.errors import UserError

DISPLAY_NAME_MAX = 128
RUN_NAME_MAX = 63


@dataclass(frozen=True)
class NameRule:
    """A pattern matched with `re.fullmatch` plus a length range, and the rule in words for the error line."""

    pattern: re.Pattern[str]
    max_len: int
    words: str
    min_len: int = 1


def matches(rule: NameRule, value: object) -> bool:
    """Whether `value` is a str of allowed length that the whole pattern matches.

    Args:
        rule: the NameRule.
        value: the value to check (anything; non-strings never match).

    Returns:
        True when `value` is valid under `rule`.
    """
    return (isinstance(value, str) and rule.min_len <= len(value) <= rule.max_len
            and rule.pattern.fullmatch(value) is not None)


def check(rule: NameRule, value: object, field: str, what: str) -> str:
    """`value` when valid under `rule`, else UserError "field: 'value' is not a valid <what> (<rule>)".

    Args:
        rule: the NameRule.
        value: the value to check.
        field: the field named in the error (e.g. "launch.name").
        what: what the value is, in words (e.g. "run name").

    Returns:
        `value` unchanged.

    Raises:
        UserError: one line naming the field and the rule.
    """
    if not matches(rule, value):
        raise UserError(f"{field}: {shown(value)} is not a valid {what} ({rule.words})")
    assert isinstance(value, str)
    return value


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: control characters escaped, never a second line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


RUN_NAME = NameRule(re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), RUN_NAME_MAX,
                    "letters, digits, '.', '_', '-'; starts with a letter or digit; at most 63 characters")
DISPLAY_NAME = NameRule(re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]+"), DISPLAY_NAME_MAX,
                        "printable characters only, no newline or control characters; at most 128 characters")


def is_display_name(value: object) -> bool:
    """Pattern + length, and every character printable (`str.isprintable`: no Cc/Cf/Cs/Co/Cn, no separators
    other than the ordinary space) and not only whitespace."""
    return matches(DISPLAY_NAME, value) and isinstance(value, str) and value.isprintable() and bool(value.strip())


def check_display_name(value: object, field: str = "name") -> str:
    """The Spec's display name, or UserError naming `field` and the rule.

    Args:
        value: the name.
        field: the field named in the error ("": none, for a pydantic validator that adds its own).

    Returns:
        `value` unchanged.
    """
    if not is_display_name(value):
        if not field:   # pydantic puts the field in front; the message must not start like "x.y: ..." itself
            raise UserError(f"must be a display name ({DISPLAY_NAME.words}), got {shown(value)}")
        raise UserError(f"{field}: {shown(value)} is not a valid name ({DISPLAY_NAME.words})")
    assert isinstance(value, str)
    return value


def check_run_name(value: object, field: str = "launch.name") -> str:
    """The run name (strict slug), or UserError naming `field` and the rule.

    Args:
        value: the run name.
        field: the field named in the error.

    Returns:
        `value` unchanged.
    """
    return check(RUN_NAME, value, field, "run name")


def comment_text(value: str, max_len: int = 200) -> str:
    """`value` made safe for one comment line of a script: every character that is not printable (newline,
    carriage return, escape, bidi controls, line separators, ...) becomes '?', cut to `max_len` characters.

    Args:
        value: any text.
        max_len: the longest result.

    Returns:
        One line of printable text.
    """
    out = "".join(c if c.isprintable() and unicodedata.category(c) not in ("Zl", "Zp") else "?" for c in value)
    return out if len(out) <= max_len else out[: max_len - 3] + "..."
