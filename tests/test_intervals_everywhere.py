"""Every accuracy figure in README.md and the model cards has its 95 % interval, or says why not (issue #42).

The rule, applied to README.md and every models/*/MODEL_CARD.md (fenced code and HTML comments skipped):

1. Units. Prose is cut into paragraphs (blank lines, list items and headings start a new one) and paragraphs
   into sentences at ". " or "; " followed by a capital, a backtick, a bracket or bold. A markdown table is
   read cell by cell under its header.
2. Figures. In a prose sentence that names F1, AUC or IoU (also as ΔF1), every decimal of the form
   [sign]0.ddd or 1.000 (three or more decimals) is an accuracy figure, except: the bounds of an interval
   (``a-b``, ``a–b``, ``a to b``); a decimal straight after "threshold", "bar", "≥", "within", "rate" or "±",
   or straight before "bar" / "threshold" (thresholds, bars, tolerances and learning rates are not accuracy
   figures); a decimal whose last figure name before it is another one (accuracy, Se, Sp, kappa, precision:
   outside the issue's F1 / AUC / IoU). In a table, the figures are the same decimals in a cell whose column
   header names F1, AUC or IoU.
3. Carrying an interval. A prose figure passes when an interval (``a-b`` / ``a to b``, usually written
   "(95 % CI a-b)" or "(a-b)") starts within 40 characters after it, before the next figure of the sentence.
   A table figure passes when its own cell holds an interval.
4. Saying why not. A figure without an interval passes when its sentence (prose) or, for a table, the
   table's header or the paragraph just before or after it holds one of EXEMPT: "quoted", "no interval",
   "without interval(s)", "historical". A table whose first column is "image" (one row per image: one image
   has no interval over images) is exempt as a whole.

The figures are read from the shipped text, so the test fails on any card or README sentence that prints a
bare figure; the message names the file, the line and the figure.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("models/*/MODEL_CARD.md"))]

METRIC = re.compile(r"(?<![A-Za-z0-9])(F1|AUC|IoU)(?![A-Za-z0-9])")
NUM = r"[+\-−]?(?:0\.\d{3,}|1\.000)"
FIGURE = re.compile(rf"(?<![\w.]){NUM}(?![\d])")
BOUND = r"[+\-−]?\d\.\d+"
INTERVAL = re.compile(rf"{BOUND}\s*(?:-|–|to)\s*{BOUND}")
NOT_FIGURE = re.compile(r"(?:threshold|bar|within|rate|±|≥|>=)\s*(?:of\s*)?\**$", re.IGNORECASE)
EXEMPT = re.compile(r"quoted|no interval|without intervals?|historical", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.;])\s+(?=[A-Z`(\[*])")
# Other figures a sentence may name after F1/AUC/IoU (accuracy, Se, Sp, kappa): a decimal after one of these
# belongs to it, not to the F1/AUC/IoU before it.
OTHER = re.compile(r"(?<![A-Za-z])(accuracy|Se|Sp|kappa|precision|loss|lr)(?![A-Za-z])")
NOT_FIGURE_AFTER = re.compile(r"\s*(?:bar|threshold)\b")  # "its 0.826 bar"
NEAR = 40


def _blocks(text: str):
    """Yield ('prose', line_no, paragraph) and ('table', line_no, rows, the paragraphs just around it),
    outside code and comments."""
    lines = re.sub(r"<!--.*?-->", lambda m: " " * len(m.group()), text, flags=re.S).split("\n")
    i, para, start, fenced = 0, [], 0, False
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("```"):
            fenced = not fenced
        if fenced or s.startswith("```"):
            i += 1
            continue
        if s.startswith("|"):
            if para:
                yield "prose", start, " ".join(para)
                para = []
            rows, first = [], i
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            before, j = [], first - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            while j >= 0 and lines[j].strip() and not lines[j].strip().startswith(("|", "```")):
                before.insert(0, lines[j].strip())
                j -= 1
            after = []
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            while j < len(lines) and lines[j].strip() and not lines[j].strip().startswith("|"):
                after.append(lines[j].strip())
                j += 1
            yield "table", first + 1, rows, " ".join(before + after)
            continue
        new_unit = not s or s.startswith(("#", "- ", "* ")) or re.match(r"\d+\. ", s)
        if new_unit and para:
            yield "prose", start, " ".join(para)
            para = []
        if s:
            if not para:
                start = i + 1
            para.append(s)
        i += 1
    if para:
        yield "prose", start, " ".join(para)


def _last(pattern: re.Pattern, text: str) -> int:
    return max((m.start() for m in pattern.finditer(text)), default=-1)


def _figures(text: str) -> list[re.Match]:
    spans = [m.span() for m in INTERVAL.finditer(text)]
    out = []
    for m in FIGURE.finditer(text):
        before = text[: m.start()]
        if any(a <= m.start() < b for a, b in spans) or NOT_FIGURE.search(before.rstrip()):
            continue
        if NOT_FIGURE_AFTER.match(text, m.end()):
            continue
        if _last(OTHER, before) > _last(METRIC, before):  # "accuracy 0.9562" after "F1 ...": not an F1
            continue
        out.append(m)
    return out


def _prose_offenders(text: str) -> list[str]:
    bad = []
    for sentence in SENTENCE_END.split(text):
        if not METRIC.search(sentence) or EXEMPT.search(sentence):
            continue
        figs = _figures(sentence)
        for k, m in enumerate(figs):
            stop = figs[k + 1].start() if k + 1 < len(figs) else len(sentence)
            iv = INTERVAL.search(sentence, m.end(), stop)
            if iv is None or iv.start() - m.end() > NEAR:
                bad.append(f"{m.group()} in: {sentence[max(0, m.start() - 60) : m.end() + 30]!r}")
    return bad


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table_offenders(rows: list[str], around: str) -> list[str]:
    head = _cells(rows[0])
    if head[0].lower() == "image" or EXEMPT.search(rows[0]) or EXEMPT.search(around):
        return []
    cols = [k for k, h in enumerate(head) if METRIC.search(h)]
    bad = []
    for row in rows[2:]:
        cells = _cells(row)
        for k in cols:
            if k < len(cells) and _figures(cells[k]) and not INTERVAL.search(cells[k]):
                bad.append(f"{cells[k]!r} under {head[k]!r} in row {cells[0]!r}")
    return bad


def offenders(text: str) -> list[str]:
    bad = []
    for kind, line, *rest in _blocks(text):
        found = _prose_offenders(rest[0]) if kind == "prose" else _table_offenders(*rest)
        bad += [f"line {line}: {b}" for b in found]
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_accuracy_figure_has_its_interval_or_says_why_not(doc):
    bad = offenders(doc.read_text(encoding="utf-8"))
    assert not bad, f"{doc.relative_to(ROOT)}: figures without an interval or a reason:\n" + "\n".join(bad)


def test_the_rule_catches_bare_figures_and_passes_the_written_forms():
    assert offenders("Pooled F1 0.8177 against 0.8196 (fp32).\n")  # two bare figures
    assert offenders("| model | F1 |\n| --- | --- |\n| a | 0.8160 |\n")  # bare table cell
    assert not offenders("F1 0.8232 (95 % CI 0.817-0.830), AUC 0.9789 (0.976 to 0.981).\n")
    assert not offenders("ΔF1 -0.0465 (-0.0512 to -0.0423) at the threshold 0.441, bar 0.826.\n")
    assert not offenders("A test F1 0.8201 of a replaced model: historical figure, no interval.\n")
    assert not offenders("| image | F1 |\n| --- | --- |\n| 01 | 0.81 |\n| 02 | 0.812 |\n")
    assert not offenders("| v | F1 |\n| --- | --- |\n| a | 0.8231 |\n\nF1: no interval: old record.\n")
    assert not offenders("```\nF1 0.8177\n```\n")
    assert not offenders("F1 0.8223 (95 % CI 0.813-0.831), accuracy 0.9562, kappa 0.7973.\n")
    assert not offenders("F1 and ΔF1: no interval: old run.\n\n| v | F1 |\n| --- | --- |\n| a | 0.8231 |\n")
    assert not offenders("It passed its 0.826 bar on the F1 of its read.\n")
    assert offenders("Validation F1 0.8164. The fine-tune kept no counts (no interval).\n")  # other sentence
