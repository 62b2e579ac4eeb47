"""The one table of variant names: what each bench / ``quantize --variants`` name is made of.

A row names a model folder the bench measures: the shipped model it comes from, the pruning and INT8
recipe applied to it, and the float model an INT8 row is held to. The default model's own recipes are
named bare (fp32, int8, ...); any other shipped model's are ``<model>-<recipe>`` (small-int8,
wnet-int8-nncf), made by ``derive``, and ``derived`` is the one place a name is read back into its row.
Nothing else parses variant names. This module imports nothing heavy: the CLI builds its help from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_MODEL = "default"  # the shipped model the recipes' own rows are built from
FP32 = "fp32"  # the recipe that only exports the float model (no pruning, no INT8)
PRUNE_RATIO = 0.5  # share of 3x3 filters a pruned recipe removes (then fine-tunes)

# quantize --int8: method -> (the quantizer, what it writes). The bench's recipes use all but QAT.
INT8_METHODS = {
    "ptq": ("PaddleSlim PTQ", "legacy program + QDQ ONNX for every engine"),
    "qat": ("PaddleSlim QAT", "legacy program + QDQ ONNX for every engine"),
    "nncf": ("OpenVINO's NNCF", "OpenVINO IR"),
    "ort": ("ONNX Runtime's quantize_static", "QDQ ONNX"),
    "litert": ("LiteRT's converter (onnx2tf, in its own venv)", "full-integer INT8 .tflite"),
}
ENGINE_QUANTIZERS = ("nncf", "ort")  # the engines' own quantizers, from the float ONNX file
CONVERTER_INT8 = ("litert",)  # INT8 by an engine's converter, from the float ONNX file (export.litert)


@dataclass(frozen=True)
class Variant:
    name: str
    source: str | None  # the shipped model folder it is made from; None: the seed tutorial's U-Net
    recipe: str | None  # the RECIPES row applied to ``source``; None: ``source`` as shipped
    prune: float | None = None  # share of 3x3 filters pruned (then fine-tuned)
    int8: str | None = None  # None | ptq | nncf | ort | litert (INT8_METHODS)
    float_counterpart: str | None = None  # the float variant an INT8 one is held to
    default_bench: bool = field(default=True, compare=False)  # in BenchConfig.variants' default

    def quantize_args(self) -> dict:
        """``quantize``'s prune / int8 arguments for this recipe."""
        return {"prune": self.prune, "int8": self.int8}


def _recipe(
    name: str, prune: float | None = None, int8: str | None = None, float_of: str | None = None, **kw
) -> Variant:
    return Variant(name, DEFAULT_MODEL, name, prune, int8, float_of, **kw)


# How each variant is made from a float model, named as the default's own (build/models/<name>).
RECIPES: tuple[Variant, ...] = (
    _recipe(FP32),
    _recipe("pruned", prune=PRUNE_RATIO),
    _recipe("int8", int8="ptq", float_of=FP32),
    _recipe("pruned-int8", prune=PRUNE_RATIO, int8="ptq", float_of="pruned"),
    _recipe("int8-nncf", int8="nncf", float_of=FP32),
    _recipe("int8-ort", int8="ort", float_of=FP32),
    _recipe("int8-litert", int8="litert", float_of=FP32),
    _recipe("pruned-int8-nncf", prune=PRUNE_RATIO, int8="nncf", float_of="pruned", default_bench=False),
)
RECIPE_NAMES = tuple(r.name for r in RECIPES)
_BY_RECIPE = {r.name: r for r in RECIPES}
# Every recipe but the plain float export applies to another shipped model as <model>-<recipe>.
DERIVABLE = tuple(r for r in RECIPES if r.name != FP32)


def derive(model: str, recipe: str, default_bench: bool = False) -> Variant:
    """Shipped model ``model`` made by the default's recipe ``recipe``: ``<model>-<recipe>``, held to
    ``model`` itself (or to its own pruned variant)."""
    r = _BY_RECIPE[recipe]
    if r not in DERIVABLE:
        raise ValueError(f"recipe {recipe!r} is the float export itself: the variant is {model!r}")
    flt = r.float_counterpart
    if flt is not None:
        flt = model if flt == FP32 else f"{model}-{flt}"
    return Variant(f"{model}-{recipe}", model, recipe, r.prune, r.int8, flt, default_bench)


def shipped(model: str, default_bench: bool = True) -> Variant:
    """A shipped model folder benchmarked as it is."""
    return Variant(model, model, None, default_bench=default_bench)


SEED_UNET = Variant("seed-unet", None, None)  # PaddleSeg's U-Net of the seed tutorial, untrained: speed only

# Every named variant, in the bench's default order (default_bench marks that list). The INT8 builds of
# `small` and `wnet-small` stay in the table (`--variants` runs them) but not in the default sweep: on every
# CPU measured (docs/results) the space-to-depth models' INT8 rows beat them on both latency and F1, and on
# an AVX2-only CPU their five variants (11 cells, 3 builds) were a fifth of a 30-minute `make bench`.
TABLE: tuple[Variant, ...] = (
    *RECIPES,
    shipped("small"),
    derive("small", "int8"),
    derive("small", "int8-nncf"),
    derive("small", "int8-ort"),
    derive("small", "pruned", default_bench=True),
    shipped("wnet"),
    derive("wnet", "int8-nncf", default_bench=True),
    derive("wnet", "int8-ort", default_bench=True),
    derive("wnet", "int8-litert", default_bench=True),
    shipped("wnet-small"),
    derive("wnet-small", "int8-nncf"),
    derive("wnet-small", "int8-ort"),
    shipped("s2d-fast"),
    derive("s2d-fast", "int8-nncf", default_bench=True),
    derive("s2d-fast", "int8-ort", default_bench=True),
    derive("s2d-fast", "int8-litert", default_bench=True),
    shipped("s2d-wnet"),
    derive("s2d-wnet", "int8-nncf", default_bench=True),
    derive("s2d-wnet", "int8-ort", default_bench=True),
    derive("s2d-wnet", "int8-litert", default_bench=True),
    SEED_UNET,
)
ROWS = {v.name: v for v in TABLE}
DEFAULT_BENCH = tuple(v.name for v in TABLE if v.default_bench)


def derived(name: str, is_model: Callable[[str], bool] = lambda model: True) -> Variant | None:
    """``name`` read as ``derive(model, recipe).name`` for a model ``is_model`` accepts (the longest recipe
    first: small-pruned-int8 is small by pruned-int8, unless small is not a model); None when it is not
    one. The only reader of variant names."""
    for r in sorted(DERIVABLE, key=lambda r: len(r.name), reverse=True):
        model = name.removesuffix(f"-{r.name}")
        if model != name and model and is_model(model):
            return derive(model, r.name)
    return None


def lookup(name: str) -> Variant | None:
    """The row of a table name, or of a derived one (``<model>-<recipe>``, any model); None otherwise (a
    shipped model or --models folder outside the table)."""
    return ROWS.get(name) or derived(name)


def float_counterpart(name: str) -> str | None:
    """The float variant a quantized one was made from (int8-nncf -> fp32, pruned-int8 -> pruned,
    small-int8-ort -> small); None for a float variant or a name outside the table."""
    row = lookup(name)
    return row.float_counterpart if row else None


def family(model: str) -> tuple[str, ...]:
    """The bench names of shipped model ``model`` and of the variants the recipes make of it: the
    default's are the recipes' own names (fp32, int8, ...), another model's ``model`` and
    ``<model>-<recipe>``."""
    if model == DEFAULT_MODEL:
        return RECIPE_NAMES
    return (model, *(derive(model, r.name).name for r in DERIVABLE))


def float_name(model: str) -> str:
    """The bench name of shipped model ``model``'s float row (fp32 for the default)."""
    return FP32 if model == DEFAULT_MODEL else model
