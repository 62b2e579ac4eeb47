"""The README is for readers: short, its generated tables current, every shell command in it valid as written.

Commands that need DRIVE, a bench record, a bundle, the network or minutes are checked by parsing: a
``fundus-edge`` line through the CLI's own parser (subcommand, every flag, its choices and required
options), a ``python -m MODULE`` line against that module's ``--help`` (every flag it uses exists), a
``make`` line by ``make -n`` (the target and its recipe exist). The commands in RUNS_AS_WRITTEN need none
of those and run.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNS_AS_WRITTEN = {"python -m fundus_edge.readme_tables --check"}


def shell_commands(text: str) -> list[str]:
    """Every command line of the README's fenced blocks that are shell (no language, bash, sh, console)."""
    out, lang = [], None
    for line in text.splitlines():
        m = re.match(r"^```(\w*)\s*$", line)
        if m:
            lang = None if lang is not None else (m.group(1) or "sh")
            continue
        if lang in ("sh", "bash", "shell", "console") and line.strip() and not line.lstrip().startswith("#"):
            out.append(" ".join(shlex.split(line, comments=True)))
    return out


COMMANDS = shell_commands(README.read_text())


def test_readme_has_the_commands_it_promises():
    firsts = {
        c.split()[0] + (" " + c.split()[1] if c.startswith(("fundus-edge", "make")) else "") for c in COMMANDS
    }
    for cmd in (
        "make test",
        "make bench",
        "fundus-edge train",
        "fundus-edge export",
        "fundus-edge quantize",
        "fundus-edge bench",
        "fundus-edge pick",
        "fundus-edge pack",
        "fundus-edge selftest",
        "fundus-edge predict",
        "fundus-edge serve",
        "fundus-edge biomarkers",
    ):
        assert cmd in firsts, f"README's usage lacks {cmd}"


def test_readme_and_model_cards_are_short():
    assert len(README.read_text().splitlines()) <= 250
    cards = sorted(ROOT.glob("models/*/MODEL_CARD.md"))
    assert cards
    long = {c.parent.name: n for c in cards if (n := len(c.read_text().splitlines())) > 200}
    assert not long, f"model cards over 200 lines: {long}"


def _cli_error(argv: list[str]) -> str | None:
    """argparse's complaint about ``fundus-edge argv``, or None when the line parses."""
    from fundus_edge.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as e:
        return err.getvalue().strip().splitlines()[-1] if e.code else None
    return None


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.startswith("fundus-edge ")])
def test_fundus_edge_command_parses(cmd):
    assert _cli_error(shlex.split(cmd)[1:]) is None, f"{cmd!r}: {_cli_error(shlex.split(cmd)[1:])}"


@pytest.mark.parametrize(
    "cmd", [c for c in COMMANDS if c.startswith("python -m ") and c not in RUNS_AS_WRITTEN]
)
def test_python_module_flags_exist(cmd):
    argv = shlex.split(cmd)
    r = subprocess.run(
        [sys.executable, "-m", argv[2], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"{argv[2]} --help: {r.stderr.strip()[-300:]}"
    missing = [f for f in argv[3:] if f.startswith("--") and f.split("=")[0] not in r.stdout]
    assert not missing, f"{cmd!r}: {argv[2]} has no {missing}"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.startswith("make ")])
def test_make_target_exists(cmd):
    r = subprocess.run(
        ["make", "-n", *shlex.split(cmd)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, f"{cmd!r}: {r.stderr.strip()}"


@pytest.mark.parametrize("cmd", sorted(RUNS_AS_WRITTEN))
def test_command_runs_as_written(cmd):
    assert cmd in COMMANDS, f"{cmd!r} is no longer in the README"
    r = subprocess.run(
        shlex.split(cmd.replace("python", sys.executable, 1)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"{cmd!r}: {r.stderr.strip()}"


def test_every_readme_command_is_checked():
    checked = ("fundus-edge ", "python -m ", "make ")
    assert COMMANDS and all(c.startswith(checked) for c in COMMANDS), [
        c for c in COMMANDS if not c.startswith(checked)
    ]


def test_shell_commands_reads_only_shell_blocks():
    text = (
        "```\nmake test   # note\n```\n```python\nimport x\n```\n"
        "```bash\n# a comment\nfundus-edge pick --min-f1 0.8\n```\n"
    )
    assert shell_commands(text) == ["make test", "fundus-edge pick --min-f1 0.8"]


def test_a_bad_flag_is_caught():
    assert "unrecognized arguments: --no-such-flag" in _cli_error(["pick", "--no-such-flag"])
    assert _cli_error(["pick", "--min-f1", "0.82"]) is None


def _record(tmp_path, date="2026-12-05 09:00", f1_small=0.8160):
    import json

    rows = [
        {
            "variant": "fp32",
            "backend": "openvino",
            "precision": "fp32",
            "status": "ok",
            "p50_ms": 60.0,
            "f1": 0.8223,
            "auc": 0.979,
        },
        {
            "variant": "fp32",
            "backend": "openvino",
            "precision": "bf16",
            "status": "ok",
            "p50_ms": 35.0,
            "f1": 0.8222,
            "auc": 0.979,
        },
        {
            "variant": "small",
            "backend": "openvino",
            "precision": "bf16",
            "status": "ok",
            "p50_ms": 15.0,
            "f1": f1_small,
            "auc": 0.976,
        },
        {
            "variant": "small",
            "backend": "paddle",
            "precision": "fp32",
            "status": "ok",
            "p50_ms": 40.0,
            "f1": f1_small,
            "auc": 0.976,
        },
        {"variant": "int8", "backend": "paddle", "precision": "int8", "status": "run_failed", "error": "x"},
    ]
    meta = {
        "date": date,
        "machine": {
            "cpu": "Intel(R) Xeon(R) Processor",
            "cores": 2,
            "isa_flags": ["avx2", "avx512f", "amx_int8"],
        },
        "threads": 2,
        "images": "DRIVE test",
        "image_size": "584x565",
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": meta, "results": rows}))
    return path


def test_history_writes_one_page_and_record_per_run_and_keeps_another_record(tmp_path):
    from fundus_edge.bench.history import latest_record, write_run_page
    from fundus_edge.runtime.errors import InputError

    out = tmp_path / "results"
    page = write_run_page(_record(tmp_path), out)
    assert page.name == "2026-12-05-0900-intel-xeon-amx.md" and page.with_suffix(".json").is_file()
    text = page.read_text()
    front = text.split("## Pareto front", 1)[1].split("## Every cell", 1)[0]
    # the front: small (15 ms, 0.8160) then fp32 bf16 (35 ms, 0.8222) then fp32 (60 ms, 0.8223); slower and
    # no better rows are off it
    assert [
        line.split(" | ")[0].strip("| ")
        for line in front.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:] == ["small", "fp32", "fp32"]
    assert "| small | paddle |" not in front and "run_failed" in text
    assert page.name in (out / "README.md").read_text() and latest_record(out) == page.with_suffix(".json")
    write_run_page(_record(tmp_path), out)  # the same record again: fine
    with pytest.raises(InputError, match="already there"):
        write_run_page(_record(tmp_path, f1_small=0.81), out)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(InputError, match="bad.json: not a bench results.json"):
        write_run_page(tmp_path / "bad.json", out)


def test_readme_tables_fill_blocks_and_check_finds_a_stale_one(tmp_path):
    from fundus_edge.runtime.errors import InputError

    from fundus_edge.readme_tables import main, render

    record = _record(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(
        "x\n<!-- generated: shipped-models -->\n<!-- /generated -->\n"
        "<!-- generated: bench-summary -->\nold\n<!-- /generated -->\n"
    )
    args = ["--readme", str(readme), "--models", str(ROOT / "models"), "--record", str(record)]
    assert main([*args, "--check"]) == 1 and "old" in readme.read_text()  # --check changes nothing
    assert main(args) == 0 and main([*args, "--check"]) == 0
    text = readme.read_text()
    default = next(line for line in text.splitlines() if line.startswith("| `default` |"))
    assert default.endswith(
        "| 60.0 ms | 35.0 ms | – | – | – |"
    )  # OpenVINO fp32, bf16; no Paddle, ONNX Runtime or LiteRT row in this record
    assert "| `small` |" in text and "| small | openvino | bf16 | 15.0 | 0.8160 |" in text
    with pytest.raises(InputError, match="unknown generated block 'nope'"):
        render("<!-- generated: nope -->\n<!-- /generated -->", ROOT / "models", record)


def test_links_in_the_readme_docs_and_cards_point_at_files():
    pages = [README, *ROOT.glob("docs/**/*.md"), *ROOT.glob("models/*/MODEL_CARD.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and not re.match(r"\w+://", path) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
