"""Final-answer extraction and the cheap (string / numeric) equivalence checks for math.

Everything here is linear-time string work with no sympy, so it is safe to run in the caller's
process; anything symbolic goes through `prime_jax.verifiers.symbolic` (a killable worker).
"""

from __future__ import annotations

import re

# Answers longer than this are never a real final answer; they score 0 without parsing.
MAX_ANSWER_CHARS = 2_000
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_MARKERS = ("final answer is", "answer is", "final answer:", "answer:")
_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


def _braced_group(text: str, open_index: int) -> str | None:
    """Returns the content of the `{...}` group opening at `open_index` (iterative matching)."""
    depth = 0
    for i in range(open_index, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1:i]
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (nested braces allowed), else None."""
    best_start = -1
    for command in _BOX_COMMANDS:
        best_start = max(best_start, text.rfind(command))
    while best_start >= 0:
        after = best_start + len("\\boxed" if text.startswith("\\boxed", best_start) else "\\fbox")
        rest = text[after:after + 2]
        if rest.startswith("{"):
            content = _braced_group(text, after)
            if content is not None:
                return content
        elif rest.startswith(" "):  # `\boxed 5` form: the next token.
            match = re.match(r"\s+([^\s$]+)", text[after:after + 200])
            if match:
                return match.group(1)
        # Unbalanced or malformed: try the previous box command.
        best_start = max(text.rfind(command, 0, best_start) for command in _BOX_COMMANDS)
    return None


def extract_answer(response: str) -> str | None:
    """The final answer: last boxed expression, else text after an "answer is" marker, else the
    last number in the response; None if nothing is found."""
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed.strip()
    lowered = response.lower()
    for marker in _MARKERS:
        position = lowered.rfind(marker)
        if position >= 0:
            tail = response[position + len(marker):].strip()
            tail = tail.split("\n", 1)[0].strip().rstrip(".").strip()
            if tail.startswith("$") and tail.count("$") >= 2:
                tail = tail[1:tail.index("$", 1)]
            if tail:
                return tail.strip()
    numbers = _NUMBER_RE.findall(response[-10_000:])
    return numbers[-1] if numbers else None


_UNIT_WORDS = (
    "cm", "m", "km", "mm", "inches", "inch", "in", "feet", "foot", "ft", "meters", "meter",
    "miles", "mile", "units", "unit", "square", "sq", "degrees", "degree", "dollars", "dollar",
    "cents", "cent", "hours", "hour", "minutes", "minute", "seconds", "second", "days", "day",
    "years", "year", "cubic", "pounds", "kg", "g", "liters", "ways", "people", "students",
)
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm|mathbf)\s*\{([^{}]*)\}")
_UNIT_SUFFIX_RE = re.compile(
    r"^(.*?[\d}.)])\s+(?:(?:" + "|".join(_UNIT_WORDS) + r")\b(?:\^\{?\d\}?)?\s*)+$")


def normalize_answer(answer: str) -> str:
    """A canonical string form: no spacing commands, `$`, `\\left`/`\\right`, degree signs,
    units or `\\text{}` wrappers; `\\dfrac`/`\\tfrac` -> `\\frac`; a lone `x =` prefix dropped."""
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text
    text = text.replace("\n", " ").replace("\\!", "").replace("\\,", " ").replace("\\;", " ")
    text = text.replace("\\:", " ").replace("\\ ", " ").replace("~", " ")
    text = text.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("\\$", "").replace("$", "")
    for degree in ("^{\\circ}", "^\\circ", "\\circ", "°", "^{\\degree}", "\\degree"):
        text = text.replace(degree, "")
    # A trailing unit in \text{} after a number, then any remaining \text{x} -> x.
    text = re.sub(r"([\d}.)])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z ]+\}(\^\{?\d\}?)?\s*$",
                  r"\1", text)
    text = _TEXT_RE.sub(r"\1", text).strip()
    match = _UNIT_SUFFIX_RE.match(text)
    if match:
        text = match.group(1)
    text = re.sub(r"^[a-zA-Z]\s*=\s*(?!.*=)", "", text)  # "x = 3" -> "3" (single equation)
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)  # \frac12 -> \frac{1}{2}
    text = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", text)
    text = text.rstrip(".").strip()
    return re.sub(r"\s+", "", text)


_FRACTION_RE = re.compile(r"^(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")
_PLAIN_RE = re.compile(r"^[-+]?(?:\d+(?:,\d{3})+|\d+)?(?:\.\d+)?$")


def parse_number(text: str) -> tuple[float, bool] | None:
    """Parses a normalised plain number (thousands commas, %, `a/b`, `\\frac{a}{b}`).

    Returns (value, had_percent) or None if `text` is not a plain number."""
    percent = text.endswith("\\%") or text.endswith("%")
    text = text.removesuffix("\\%").removesuffix("%")
    try:
        match = _FRACTION_RE.match(text)
        if match:
            value = float(match.group(2)) / float(match.group(3))
            return (-value if match.group(1) else value), percent
        if text.count("/") == 1:
            top, bottom = text.split("/")
            if _PLAIN_RE.match(top) and _PLAIN_RE.match(bottom) and top and bottom:
                return float(top.replace(",", "")) / float(bottom.replace(",", "")), percent
            return None
        if text and _PLAIN_RE.match(text) and any(c.isdigit() for c in text):
            return float(text.replace(",", "")), percent
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def close(a: float, b: float, rel_tol: float = 1e-4) -> bool:
    """Relative closeness with a tiny absolute floor for values near zero."""
    return abs(a - b) <= max(rel_tol * max(abs(a), abs(b)), 1e-9)


def numbers_equal(pred: tuple[float, bool], truth: tuple[float, bool],
                  rel_tol: float = 1e-4) -> bool:
    """Numeric equality; a percentage on either side also matches its value / 100."""
    (a, a_pct), (b, b_pct) = pred, truth
    candidates_a = [a, a / 100] if a_pct else [a]
    candidates_b = [b, b / 100] if b_pct else [b]
    return any(close(x, y, rel_tol) for x in candidates_a for y in candidates_b)
