"""CPU identity (issue 42): records, pages, bundles, pick and the speed probe's baseline tell two CPUs of one
name apart by vendor, family / model and flags, and name the generation where family and model identify it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fundus_edge.runtime.cpu import CpuIdentity, cpu_identity, identity_from, identity_of

AVX512 = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]


def cpuinfo(tmp_path: Path, vendor: str, family: int, model: int, flags: list[str], name="AMD EPYC") -> str:
    """A /proc/cpuinfo of two cores (each repeats every line) with these fields."""
    core = (
        f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nstepping\t: 1\nflags\t\t: fpu sse2 {' '.join(flags)}\n\n"
    )
    path = tmp_path / f"cpuinfo-{vendor}-{family}-{model}"
    path.write_text(core.format(n=0) + core.format(n=1))
    return str(path)


@pytest.mark.parametrize(
    ("vendor", "family", "model", "flags", "generation"),
    [
        ("AuthenticAMD", 25, 0x01, ["avx2", "fma"], "Zen 3"),  # Milan, this development VM
        ("AuthenticAMD", 25, 0x11, AVX512, "Zen 4"),  # Genoa
        ("AuthenticAMD", 25, 0x61, AVX512, "Zen 4"),  # Raphael
        ("AuthenticAMD", 26, 0x02, [*AVX512, "avx_vnni"], "Zen 5"),  # Turin
        ("AuthenticAMD", 23, 0x31, ["avx2", "fma"], "Zen 2"),  # Rome
        ("GenuineIntel", 6, 0x8F, [*AVX512, "amx_bf16", "amx_int8"], "Sapphire Rapids"),
        ("GenuineIntel", 6, 0xCF, [*AVX512, "amx_bf16", "amx_int8"], "Emerald Rapids"),
        ("GenuineIntel", 6, 0x55, ["avx2", "fma", "avx512f", "avx512_vnni"], "Cascade Lake"),
        ("AuthenticAMD", 26, 0x50, [*AVX512, "avx_vnni"], None),  # not in the table: named by its flags
    ],
)
def test_generation_from_family_and_model(tmp_path, vendor, family, model, flags, generation):
    ident = cpu_identity(cpuinfo(tmp_path, vendor, family, model, flags))
    assert (ident.family, ident.model, ident.stepping, ident.generation) == (family, model, 1, generation)
    assert ident.vendor == {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}[vendor]
    assert "sse2" not in ident.flags and set(ident.flags) == set(flags)
    assert f"family {family} model {model} stepping 1" in ident.title
    if generation:
        assert generation in ident.title and ident.short.endswith(generation)
    else:  # no generation to name: the title and short name carry the flag set, the slug family and model
        assert "unknown generation" in ident.title and ", ".join(ident.flags) in ident.short
        assert f"f{family}m{model}" in ident.slug
    assert identity_of(ident.to_dict()) == ident  # what a record keeps reads back as the same identity


def test_zen4_and_zen5_of_one_name_are_two_identities(tmp_path):
    """The issue's case: both read "AMD EPYC" with AVX-512 VNNI / BF16; a VM may hide AVX-VNNI too."""
    zen4 = cpu_identity(cpuinfo(tmp_path, "AuthenticAMD", 25, 0x11, AVX512))
    zen5 = cpu_identity(cpuinfo(tmp_path, "AuthenticAMD", 26, 0x02, AVX512))  # same flags, other design
    assert zen4.name == zen5.name and zen4.flags == zen5.flags
    assert zen4.key != zen5.key and zen4.slug != zen5.slug
    assert (zen4.slug, zen5.slug) == ("amd-epyc-zen4-avx512", "amd-epyc-zen5-avx512")
    # the stepping is named, not compared: a revision of one design
    again = identity_from("AMD EPYC 9654", "AuthenticAMD", 25, 0x11, 2, AVX512)
    assert again.key == zen4.key and again.stepping == 2


@pytest.mark.parametrize(
    ("flags", "generation"),
    [([*AVX512, "avx_vnni"], "Zen 5"), (AVX512, "Zen 4"), (["avx2", "fma"], "Zen 2/3"), (["sse2"], None)],
)
def test_an_old_record_is_its_own_identity_named_by_what_its_flags_prove(flags, generation):
    old = identity_of({"cpu": "AMD EPYC", "isa_flags": flags})  # before issue 42: name and flags only
    assert old.family is None and old.generation == generation and old.by_flags == (generation is not None)
    assert "family / model not recorded" in old.title
    assert old.slug.startswith("amd-epyc-") and "zen" not in old.slug  # the page names it had
    new = identity_from("AMD EPYC", "AuthenticAMD", 26, 0x02, 0, flags)
    assert old.key != new.key  # never the same identity as a record that knows its family and model
    intel = identity_of({"cpu": "Intel(R) Xeon(R) Processor", "isa_flags": [*AVX512, "amx_int8"]})
    assert intel.vendor == "Intel" and intel.generation is None and intel.slug == "intel-xeon-amx"


def test_the_bench_record_and_its_page_name_the_generation(tmp_path):
    from fundus_edge.bench.history import run_page, run_slug
    from fundus_edge.bench.machine import cpu_info

    machine = cpu_info()
    here = cpu_identity()
    assert (machine["cpu_family"], machine["cpu_model"], machine["generation"]) == (
        here.family,
        here.model,
        here.generation,
    )
    zen4 = identity_from("AMD EPYC", "AuthenticAMD", 25, 0x11, 1, AVX512).to_dict()
    meta = {"date": "2026-12-06 10:10", "machine": {**zen4, "cores": 2}, "threads": 2}
    meta.update(images="DRIVE test", image_size="584x565")
    assert run_slug(meta) == "2026-12-06-1010-amd-epyc-zen4-avx512"
    title = run_page([], meta, "x.json").splitlines()[0]
    assert title.startswith("# Bench run 2026-12-06 10:10: AMD EPYC, Zen 4 (AMD family 25 model 17")


def _write(folder: Path, name: str, machine: dict, probe_ms: float | None = None, method="conv") -> Path:
    meta = {"date": "2026-12-06 10:00", "machine": machine}
    if probe_ms is not None:
        meta["speed_probe"] = {"method": method, "median_ms": probe_ms}
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "results": []}))
    return path


def test_speed_probe_baseline_is_the_runs_of_the_same_identity(tmp_path):
    from fundus_edge.bench.history import probe_history

    zen4 = identity_from("AMD EPYC", "AuthenticAMD", 25, 0x11, 1, AVX512).to_dict()
    zen5 = identity_from("AMD EPYC", "AuthenticAMD", 26, 0x02, 1, AVX512).to_dict()
    _write(tmp_path, "a", zen4, 30.0)
    _write(tmp_path, "b", {**zen4, "cpu_stepping": 2}, 31.0)  # another stepping: the same design
    _write(tmp_path, "c", zen5, 18.0)  # same name and flags, another generation: not this machine's speed
    _write(tmp_path, "d", {"cpu": "AMD EPYC", "isa_flags": AVX512}, 20.0)  # an old record: its own kind
    assert probe_history(zen4, "conv", tmp_path) == [30.0, 31.0]
    assert probe_history(zen5, "conv", tmp_path) == [18.0]
    assert probe_history({"cpu": "AMD EPYC", "isa_flags": AVX512}, "conv", tmp_path) == [20.0]


def test_readme_tables_name_the_identity_and_link_the_newest_page_of_each(tmp_path):
    from fundus_edge.bench.history import latest_per_identity, write_run_page

    from fundus_edge.readme_tables import identity_line

    zen4 = identity_from("AMD EPYC", "AuthenticAMD", 25, 0x11, 1, AVX512)
    zen5 = identity_from("AMD EPYC", "AuthenticAMD", 26, 0x02, 1, [*AVX512, "avx_vnni"])
    out, src = tmp_path / "results", tmp_path / "src"
    src.mkdir()
    for date, ident in (("2026-12-06 09:00", zen4), ("2026-12-06 10:00", zen4), ("2026-12-06 11:00", zen5)):
        meta = {"date": date, "machine": {**ident.to_dict(), "cores": 2}, "threads": 2}
        meta.update(images="DRIVE test", image_size="584x565")
        rec = src / f"{date[-5:].replace(':', '')}.json"
        rec.write_text(json.dumps({"meta": meta, "results": []}))
        write_run_page(rec, out)
    (out / "2026-11-28-1054-amd-epyc-avx2.md").write_text(
        "# `make bench`, 2026-11-28 10:54: AMD EPYC with AVX2\n"
    )
    pages = latest_per_identity(out)
    assert [(p.label, p.page.name) for p in pages] == [
        ("AMD EPYC Zen 5", "2026-12-06-1100-amd-epyc-zen5-avx512.md"),
        ("AMD EPYC Zen 4", "2026-12-06-1000-amd-epyc-zen4-avx512.md"),
        ("AMD EPYC with AVX2", "2026-11-28-1054-amd-epyc-avx2.md"),
    ]
    line = identity_line(out / "2026-12-06-1000-amd-epyc-zen4-avx512.json")
    assert line.startswith(f"Latencies hold on {zen4.title};")
    assert "2026-12-06-1100-amd-epyc-zen5-avx512.md) 2026-12-06 11:00" in line
    assert "2026-12-06-0900" not in line and "(a page without a record)" in line


def test_pick_refuses_a_record_of_another_generation_with_the_same_name_and_flags(tmp_path):
    from fundus_edge.deploy.pick import Bounds, cpu_mismatch, pick, read_record
    from fundus_edge.runtime.errors import InputError

    zen4 = identity_from("AMD EPYC", "AuthenticAMD", 25, 0x11, 1, AVX512)
    zen5 = identity_from("AMD EPYC", "AuthenticAMD", 26, 0x02, 1, AVX512)
    row = {
        "variant": "v",
        "backend": "openvino",
        "precision": "fp32",
        "status": "ok",
        "p50_ms": 5.0,
        "f1": 0.83,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": {"machine": zen5.to_dict()}, "results": [row]}))
    rec = read_record(path)
    assert rec.cpu == "AMD EPYC Zen 5" and cpu_mismatch(rec, here=zen5) is None
    why = cpu_mismatch(rec, here=zen4)
    assert why and "measured on another CPU (AMD EPYC, Zen 5" in why and "this CPU is AMD EPYC, Zen 4" in why
    if cpu_identity().key != zen5.key:  # on this machine: refused in one line, unless --any-cpu
        with pytest.raises(InputError, match="measured on another CPU"):
            pick(rec, Bounds(0.82))
        assert len(pick(rec, Bounds(0.82), any_cpu=True)) == 1
    # a record from before issue 42 with these very flags cannot show it was this CPU
    old = {"cpu": "AMD EPYC", "isa_flags": list(zen5.flags)}
    path.write_text(json.dumps({"meta": {"machine": old}, "results": [row]}))
    why = cpu_mismatch(read_record(path), here=zen5)
    assert why and "kept no family / model" in why


def test_selftest_warns_when_the_validated_cpu_is_another_identity_with_the_same_flags():
    from fundus_edge.deploy import selftest as selftest_mod
    from fundus_edge.deploy.bundle import Bundle, Validated

    here = cpu_identity()
    other = {**here.to_dict(), "cpu_family": 99, "cpu_model": 1, "generation": None}
    for ident, warned in ((here.to_dict(), False), (other, True)):
        v = Validated(None, None, None, 5.0, None, 1, "", "x", list(here.flags), "", "", cpu_identity=ident)
        why, warn = selftest_mod.cpu_refusal(Bundle("v", "openvino", "onnx", "fp32", None, 1, v, (), {}))
        assert why is None and any("this CPU is" in w for w in warn) == warned
    # a bundle packed before issue 42 (no cpu_identity) is read from its name and flags
    v = Validated(None, None, None, 5.0, None, 1, "", "AMD EPYC", ["avx2"], "", "")
    assert v.identity() == identity_of({"cpu": "AMD EPYC", "isa_flags": ["avx2"]})
    assert isinstance(v.identity(), CpuIdentity)
