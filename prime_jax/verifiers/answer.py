"""Final-answer extraction and the cheap (string / exact-number) equivalence checks for math.

Everything here is linear-time string work with no sympy, so it is safe to run in the caller's
process; anything symbolic goes through `prime_jax.verifiers.symbolic` (a killable worker).

Extraction (`extract_answer`), in order:
1. the last `\\boxed{...}` / `\\fbox{...}` whose braces close (PRIME's rule: the last box wins).
   Braces are counted raw, as the reference graders count them, so `\\boxed{185\\}` holds
   `185\\` (the stray backslash is dropped by `clean`). One pass over the text (`_brace_pairs`).
2. the text after the last "answer is" / "answer:" marker, up to the end of its sentence
   ("The final answer is 34. I hope it is correct." gives `34`); a math span there is taken
   whole, and a sentence with words gives its last expression (rule 4).
3. a response that is itself a bare expression (one short line with no words) is the answer.
4. the last complete math span (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`) or the last
   standalone number token, whichever ends later; digits inside words (`AZYUK2A`) or inside
   LaTeX groups (`\\frac{1}{2}`) are never a number token, and inline math that runs over a line
   break is no span (nor are the numbers in it). Otherwise there is no answer.
Only the last `MAX_RESPONSE_CHARS` characters of a response are searched.

Numbers are parsed and compared in `numbers` (`parse_number`, `numbers_equal`: exact, with
one tolerance between a decimal and an exact value, the same whichever side the decimal is on).
Deliberate differences from the reference graders (PRIME's `math_equal`, Qwen-Math, NeMo-Skills
use `isclose(rel_tol=1e-4)` on everything; Math-Verify rounds to 6 decimals):
- numbers: see `numbers` (no blanket relative tolerance).
- thousands separators only in the strict `1,234,567` form (or `1{,}234`, `32,\\!349`); `32, 349`
  is a list.
- `%` is a unit mark: `50\\%` equals `50` (as in hendrycks MATH) but not `0.5`, so one answer
  never covers two values (PRIME also accepts truth x 100 and truth / 100).
- no decimal commas (`1,22` is a list, Math-Verify reads 1.22); `;` separates elements only
  where there is no top-level `,`; `\\pm a` is compared as written, not as -a and a.
- the last box wins over a later "final answer is" sentence and over earlier boxes
  (Math-Verify joins several boxes); a number glued to letters (`1,000.99m²`) is no token.
"""

from __future__ import annotations

import bisect
import re

from prime_jax.verifiers.numbers import DECIMAL_RE

# Answers longer than this are never a real final answer; they score 0 without parsing.
MAX_ANSWER_CHARS = 2_000
# Only this many trailing characters of a response are searched for the final answer.
MAX_RESPONSE_CHARS = 200_000

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_MARKER_RE = re.compile(r"answer\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_DELIMITER_RE = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]")
_CLOSER = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_DISPLAY = ("$$", "\\[")  # only display math may span lines
_JOIN_GAP_RE = re.compile(
    r"^(?:[\s,;$]|\\[()\[\]]|\\q?quad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b)*$")
_NUMBER_TOKEN_RE = re.compile(
    r"(?<![\w\\{}^_/.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![\w{}^_/]|[.,]\d)")
_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")
_WORD_RE = re.compile(r"[a-zA-Z]{3,}|(?<!\S)[a-zA-Z]{2,}(?!\S)")


def _brace_pairs(text: str) -> dict[int, int]:
    """Maps the index of every `{` that closes to the index of its `}`; one left-to-right pass
    with a stack (raw braces: `\\{` counts like `{`, as in the reference graders)."""
    pairs, stack = {}, []
    for match in re.finditer(r"[{}]", text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` that closes, else the token after a
    `\\boxed 5` form, else None. Linear in `len(text)`."""
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    pairs = _brace_pairs(text)
    for box in reversed(boxes):
        start = box.end()
        while start < len(text) and text[start] == " ":
            start += 1
        if start < len(text) and text[start] == "{":
            if start in pairs:
                return text[start + 1:pairs[start]]
        elif start > box.end():
            token = re.match(r"[^\s$]+", text[start:start + 200])
            if token:
                return token.group()
    return None


def ground_truth_answer(truth: str) -> str:
    """A ground truth's answer: its last boxed content, with the boxes before it that only a
    separator (`,`, `;`, "and", "or", spacing, math delimiters) parts from it, as a comma list
    (`\\boxed{1}, \\boxed{2}` -> `1, 2`); the whole text if nothing is boxed."""
    pairs = _brace_pairs(truth) if "\\boxed" in truth or "\\fbox" in truth else {}
    contents, previous_end = [], None
    for box in _BOX_RE.finditer(truth):
        if box.end() not in pairs:
            continue
        if previous_end is not None and not _JOIN_GAP_RE.match(truth[previous_end:box.start()]):
            contents = []
        contents.append(truth[box.end() + 1:pairs[box.end()]].strip())
        previous_end = pairs[box.end()] + 1
    return ", ".join(contents) if contents else truth.strip()


def _math_spans(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(spans, broken): (start, end) of the content of every closed math span, in order, and of
    every inline span (`$`, `\\(`) that runs over a line break, which is no span (Math-Verify's
    rule). One pass over the delimiters; `\\$` is an escaped dollar, not a delimiter."""
    spans, broken, opener, content_start = [], [], None, 0
    for match in _DELIMITER_RE.finditer(text):
        token = match.group()
        if token == "\\$":
            continue
        if opener is None:
            if token in _CLOSER:
                opener, content_start = token, match.end()
        elif token == _CLOSER[opener]:
            region = (content_start, match.start())
            if opener in _DISPLAY or "\n" not in text[content_start:match.start()]:
                spans.append(region)
            else:
                broken.append(region)
            opener = None
    return spans, broken


def _after_marker(text: str) -> str | None:
    """The answer stated after the last "answer is" / "answer:" marker, to the end of its
    sentence; a math span starting there is taken whole; from a sentence with words, its one
    value ("The largest $n$ is 34": `n` only names it), or the whole sentence if it states
    several ("3 and 4", "5 or 6": then it compares as a list and never as one of them)."""
    markers = list(_MARKER_RE.finditer(text))
    if not markers:
        return None
    tail = text[markers[-1].end():].lstrip(" \t")
    spans = _math_spans(tail[:MAX_ANSWER_CHARS])[0]
    if spans and tail.startswith(("$", "\\(", "\\[")) and spans[0][0] <= 2:
        return tail[spans[0][0]:spans[0][1]].strip() or None
    line = tail.split("\n", 1)[0]
    sentence = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0].strip()
    if not sentence or _is_bare_expression(sentence):
        return sentence or None
    expressions = _expressions(sentence)
    values = [expression for expression in expressions if not is_name(clean(expression))]
    if len(values) > 1:
        return sentence  # several values ("3 and 4", "5 or 6"): the sentence is a list
    return values[0] if values else (expressions or [None])[-1]


def _is_bare_expression(text: str) -> bool:
    """One short line with no word outside LaTeX commands (three or more letters, or two
    standing alone: "so $x$ is 5" is a sentence)."""
    return (len(text) <= 200 and "\n" not in text
            and not _WORD_RE.search(_COMMAND_RE.sub("", text)))


def _expressions(text: str) -> list[str]:
    """The closed math spans and the standalone number tokens outside any span (a number in a
    broken span does not count either), in order of their ends."""
    spans, broken = _math_spans(text)
    regions = sorted(spans + broken)
    starts = [start for start, _ in regions]
    found = [(end, text[start:end].strip()) for start, end in spans]
    for number in _NUMBER_TOKEN_RE.finditer(text):
        region = bisect.bisect_right(starts, number.start()) - 1
        if region < 0 or number.start() >= regions[region][1]:
            found.append((number.end(), number.group()))
    return [expression for _, expression in sorted(found) if expression]


def _last_expression(text: str) -> str | None:
    """The last of `_expressions`, or None."""
    expressions = _expressions(text)
    return expressions[-1] if expressions else None


def extract_answer(response: str) -> str | None:
    """The final answer (rules 1-4 of the module docstring); None if there is none."""
    text = response[-MAX_RESPONSE_CHARS:]
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip()
    stated = _after_marker(text)
    if stated is not None:
        return stated
    stripped = text.strip()
    if stripped and _is_bare_expression(stripped):
        return stripped
    return _last_expression(text)


# ----------------------------------------------------------------------------- normal form

_UNIT_WORDS = (
    "cm", "m", "km", "mm", "inches", "inch", "in", "feet", "foot", "ft", "meters", "meter",
    "miles", "mile", "units", "unit", "square", "sq", "degrees", "degree", "dollars", "dollar",
    "cents", "cent", "hours", "hour", "minutes", "minute", "seconds", "second", "days", "day",
    "years", "year", "cubic", "pounds", "kg", "g", "liters", "ways", "people", "students",
    "metres", "metre", "centimeters", "centimeter", "kilometers", "kilometer", "liter", "litres",
    "litre", "hrs", "hr", "secs", "sec", "mins", "min", "grams", "gram", "lbs", "lb",
)
_UNIT_ALIASES = {
    "s": "second", "sec": "second", "m": "meter", "metre": "meter", "metr": "meter",
    "cm": "centimeter", "mm": "millimeter", "km": "kilometer", "ft": "foot", "feet": "foot",
    "in": "inch", "min": "minute", "h": "hour", "hr": "hour", "g": "gram", "kg": "kilogram",
    "lb": "pound", "l": "liter", "litre": "liter", "litr": "liter", "hrs": "hour",
    "secs": "second", "mins": "minute",
}
_GENERIC_UNITS = ("unit", "squareunit", "cubicunit")  # "10 units" says nothing about the unit
_TEXT_WRAPPER = r"\\(?:text|textbf|textnormal|textrm|mathrm|mbox|mathbf|textit)\s*"
_TEXT_UNIT_RE = re.compile(
    r"^(.*?[\d}.)])\s*" + _TEXT_WRAPPER + r"\{\s*([a-zA-Z][a-zA-Z ]*)\}(\^\{?\d\}?)?$")
_WORD_UNIT_RE = re.compile(
    r"^(.*?[\d}.)])\s+((?:(?:" + "|".join(_UNIT_WORDS) + r")\b\s*)+)(\^\{?\d\}?)?$")
_TEXT_RE = re.compile(_TEXT_WRAPPER + r"\{([^{}]*)\}")
_SPACING_RE = re.compile(r"(?<!\\)\\[,;: ]|~|\\q?quad(?![a-zA-Z])")
_LATEX_THOUSANDS_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3}(?!\d))")  # 32,\! 349


def _canonical_unit(words: str) -> str | None:
    """Lower case, no spaces, abbreviations spelled out, without a final `es` / `s` / `e` (so
    singular and plural agree: inch/inches/in, minute/minutes/min); None for a generic unit."""
    unit = re.sub(r"\s+", "", words.lower())
    unit = _UNIT_ALIASES.get(unit, unit)
    unit = re.sub(r"e?s?$", "", unit, count=1)
    unit = _UNIT_ALIASES.get(unit, unit)
    return None if unit in _GENERIC_UNITS else unit


def split_unit(answer: str) -> tuple[str, str | None]:
    """(answer without a trailing unit, the unit in a canonical spelling or None).

    A unit is a `\\text{...}`-style word after a number or a closing bracket, or a run of
    common unit words, with an optional power (`cm^2`); see `_canonical_unit`."""
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text, None
    match = _TEXT_UNIT_RE.match(text) or _WORD_UNIT_RE.match(text)
    if not match:
        return text, None
    unit = _canonical_unit(match.group(2))
    power = re.sub(r"[{}]", "", match.group(3) or "")
    return match.group(1).strip(), unit and unit + power


def clean_with_unit(answer: str) -> tuple[str, str | None]:
    """(`clean(answer)`, the trailing unit it removed or None; see `split_unit`)."""
    text = answer.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text, None
    text = text.replace("\n", " ").replace("**", "")  # markdown bold: **5**
    text = _LATEX_THOUSANDS_RE.sub(",", text).replace("\\!", "")
    text = _SPACING_RE.sub(" ", text)
    for command in ("\\left", "\\right", "\\displaystyle"):
        text = re.sub(re.escape(command) + r"(?![a-zA-Z])", "", text)
    text = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", text)
    text = text.replace("\\$", "").replace("$", "")
    for degree in ("^{\\circ}", "^\\circ", "\\circ", "°", "^{\\degree}", "\\degree"):
        text = text.replace(degree, "")
    text, unit = split_unit(text)
    text = _TEXT_RE.sub(r"\1", text).strip()
    if unit is None:  # a unit inside the wrapper: 5\text{ cm^2}
        text, unit = split_unit(text)
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)  # \frac12 -> \frac{1}{2}
    text = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", text)
    text = re.sub(r"\\?%$", "", text.rstrip(".\\ ")).strip()  # % is a unit mark
    if text.startswith("{") and _brace_pairs(text).get(0) == len(text) - 1:
        text = text[1:-1].strip()  # a group around the whole answer: {1, 2}
    return text, unit


def clean(answer: str) -> str:
    """Removes presentation only: `$`, markdown `**`, spacing commands, `\\left`/`\\right`,
    `\\displaystyle`, degree signs, a trailing unit or `%`, `\\text{}` wrappers, a trailing
    period or lone backslash, a `{}` group around everything; `\\dfrac`/`\\tfrac`/`\\cfrac` ->
    `\\frac`; `32,\\!349` -> `32,349`. Keeps spaces (LaTeX needs some)."""
    return clean_with_unit(answer)[0]


def normalize_answer(answer: str) -> str:
    """A canonical string form for exact matching and majority votes: `clean`, no whitespace."""
    return re.sub(r"\s+", "", clean(answer))


# ----------------------------------------------------------------------------- structure

_OPENERS, _CLOSERS = "([{", ")]}"
_MATRIX_RE = re.compile(
    r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.DOTALL)
_RELATION_TOKEN_RE = re.compile(r"[()\[\]{}]|\\equiv(?![a-zA-Z])|(?<![<>!=])=(?!=)")
_SUBSCRIPT_RE = re.compile(r"_(?:\{[^{}]*\}|\w)")


def _top_level_split(text: str, separator: str) -> list[str] | None:
    """`text` split at `separator` outside brackets and braces; None if the brackets do not
    balance at the top level."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and text.startswith(separator, index):
            parts.append(text[start:index])
            start = index + len(separator)
    parts.append(text[start:])
    return parts if depth == 0 else None


def _elements(text: str) -> list[str] | None:
    """`text` split at top-level commas, or at top-level `;` where it has no top-level comma;
    None if the brackets do not balance."""
    parts = _top_level_split(text, ",")
    if parts is not None and len(parts) == 1 and ";" in text:
        parts = _top_level_split(text, ";")
    return parts


def _list_items(text: str) -> list[str] | None:
    """Items of a top-level comma / "and" / "or" list (two or more), else None; a `;` list
    only when every item is bracketed (`(0;0); (1;1)`: `-12;-11` stays one expression)."""
    text = re.sub(r",?\s+(?:and|or)\s+", ", ", text)
    parts = _elements(text)
    if parts is None or len(parts) < 2:
        return None
    parts = [part.strip() for part in parts]
    if _top_level_split(text, ",") == [text] and not all(
            part[:1] in "([" and part[-1:] in ")]" for part in parts):
        return None
    return parts


def split_structure(text: str) -> tuple[str, list[str]] | None:
    """(kind, elements) of a `clean`-ed structured answer, or None for a single expression.

    Kinds: `matrix RxC` (cells row by row; pmatrix, bmatrix, ... and array are one kind),
    `set` (`\\{a, b\\}`, unordered), a bracket pair such as `()` / `(]` (tuples and intervals,
    ordered; `(0;0;0)` is `(0,0,0)`) and `list` (a bare comma list; a list truth is a multiset
    in `math`)."""
    text = text.strip()
    if DECIMAL_RE.match(text):  # 1,234,567 is one number
        return None
    matrix = _MATRIX_RE.match(text)
    if matrix:
        rows = [row for row in re.split(r"\\\\", matrix.group(2)) if row.strip()]
        cells = [[cell.strip() for cell in row.split("&")] for row in rows]
        if cells and all(len(row) == len(cells[0]) for row in cells):
            return f"matrix {len(cells)}x{len(cells[0])}", [c for row in cells for c in row]
        return None
    if text.startswith("\\{") and text.endswith("\\}"):
        inner = text[2:-2]
        items = _top_level_split(inner, ",")
        return ("set", [item.strip() for item in items]) if items else None
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        items = _elements(text[1:-1])
        if items is not None and len(items) >= 2:
            return text[0] + text[-1], [item.strip() for item in items]
    items = _list_items(text)
    return ("list", items) if items else None


def is_name(text: str) -> bool:
    """Whether `text` names a quantity rather than states a value: at most 40 chars with a
    letter, and outside subscripts no digit and no `+`, `-`, `*`, `\\pm`, `\\cdot`, `\\times`
    (`x`, `f(x)`, `a_{37}`, `(p,q)`, `|AB|`, `V_1:V_2` are names; `x+y` and `2x` are not)."""
    bare = _SUBSCRIPT_RE.sub("", text)
    return (0 < len(text) <= 40 and any(c.isalpha() for c in bare)
            and not any(c.isdigit() or c in "+-*" for c in bare)
            and not re.search(r"\\(?:pm|mp|cdot|times)(?![a-zA-Z])", bare))


def _relation_sides(text: str) -> list[str]:
    """`text` split at each `=` or `\\equiv` outside brackets and braces (`\\sum_{k=0}` is no
    relation); `<=`, `>=`, `!=` and `==` are not `=`."""
    sides, depth, start = [], 0, 0
    for match in _RELATION_TOKEN_RE.finditer(text):
        token = match.group()
        if token in _OPENERS:
            depth += 1
        elif token in _CLOSERS:
            depth = max(depth - 1, 0)
        elif depth == 0:
            sides.append(text[start:match.start()])
            start = match.end()
    return sides + [text[start:]]


def assignment_name(text: str) -> str | None:
    """The name an assignment `name = value` gives, without spaces and with `_{3}` as `_3`;
    None if `text` is no such assignment."""
    sides = _relation_sides(text)
    if len(sides) != 2 or not is_name(sides[0].strip()):
        return None
    return re.sub(r"_\{(\w)\}", r"_\1", re.sub(r"\s+", "", sides[0]))


def is_hedged_equation(text: str) -> bool:
    """An equation chain (`x = 4 = 3`) or an equation between numbers (`3 = 4`): it states
    more than one value, so it never matches a different answer (Math-Verify would accept a
    chain by its last side)."""
    sides = _relation_sides(text)
    letters = any(c.isalpha() for c in _COMMAND_RE.sub("", text))
    return len(sides) > 2 or (len(sides) == 2 and not letters)


def equation_side(text: str) -> tuple[str, bool]:
    """(the value an answer states, whether it is still an equation).

    `x = 3`, `f(x) = 3`, `(p,q) = (3,2)` state their right side (`is_name` left sides);
    `a \\approx b` states `a` (or `b` after a name); any other equation (`3 = 4`, `x = 1 = 2`)
    stays whole and is flagged, so it can never match a plain value by one of its sides."""
    if "\\approx" in text:
        before, after = text.split("\\approx", 1)
        text = after if is_name(before.strip()) else before
    sides = _relation_sides(text)
    if len(sides) == 1:
        return text.strip(), False
    if len(sides) == 2 and is_name(sides[0].strip()):
        return sides[1].strip(), False
    return text.strip(), True
