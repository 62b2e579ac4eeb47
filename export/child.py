"""The one launcher of the project's child Python processes: ``python -m MODULE ARGS`` with Paddle's PIR
switch set as the child needs it, output captured, a failure reported in one line.

Work runs in a child process where the parent cannot host it: Paddle reads ``FLAGS_enable_pir_api`` once,
when it starts (the legacy program, PaddleSlim and a legacy PaddleSeg export need it off, ``paddle.set_flags``
at run time does not switch ``jit.save``), a converter may abort the whole process (paddle2onnx on an
operator it cannot convert), and a benchmark cell's peak memory must be its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable

from fundus_edge.runtime.errors import ModelError

PIR_FLAG = "FLAGS_enable_pir_api"
MAX_LINE = 300  # as runtime.errors.one_line cuts an error


def failure_line(r: subprocess.CompletedProcess) -> str:
    """Why a child failed, in one line: its last ``error: ...`` line (how our children refuse an input,
    prefix dropped), else the last non-blank line of stderr (of stdout when stderr has none), else 'no
    output'. Not the whole stderr: Paddle's log lines and a traceback's frames would bury the reason."""
    out, err = r.stdout or "", r.stderr or ""
    marked = [ln.strip() for ln in (out + "\n" + err).splitlines() if ln.startswith("error:")]
    if marked:
        return marked[-1].removeprefix("error:").strip()[:MAX_LINE]
    lines = [ln.strip() for ln in (err if err.strip() else out).splitlines() if ln.strip()]
    return lines[-1][:MAX_LINE] if lines else "no output"


def run_child(
    module: str,
    args: Iterable = (),
    *,
    pir: bool | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    what: str = "child process failed",
    error: type[Exception] = ModelError,
    check: bool = True,
    ok: Callable[[subprocess.CompletedProcess], bool] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` (this interpreter), output captured as text. ``pir``: set
    FLAGS_enable_pir_api on (True) or off (False) for the child; None leaves the environment's. ``env``:
    more variables for the child. With ``check`` a non-zero exit, or a result ``ok`` refuses (files not
    written, no answer on stdout), raises ``error("<what>: <failure_line>")``; without it the caller reads
    the result (a benchmark cell's crash is that cell's row)."""
    child_env = {**os.environ, **(env or {})}
    if pir is not None:
        child_env[PIR_FLAG] = "1" if pir else "0"
    try:
        r = subprocess.run(
            [sys.executable, "-m", module, *(str(a) for a in args)],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise error(f"{what}: no answer within {timeout:g} s") from None
    if check and (r.returncode != 0 or (ok is not None and not ok(r))):
        raise error(f"{what}: {failure_line(r)}")
    return r
