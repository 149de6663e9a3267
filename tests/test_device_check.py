"""benchmarks/device_check.py end to end on the test model: every part runs, the summary line and the
JSON agree, and a kernel the device cannot run is reported instead of ending the check (a device
session is short: one failing variant must not cost the others' numbers)."""

import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def device_check():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import device_check
        yield device_check
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_tiny_check_reports_every_part_and_survives_a_failing_kernel(device_check, tmp_path, monkeypatch, capsys):
    real_loop = device_check.decode_loop

    def paged_fails(graphdef, paged, context):
        if paged:
            raise RuntimeError("no paged kernel on this device")
        return real_loop(graphdef, paged, context)

    monkeypatch.setattr(device_check, "decode_loop", paged_fails)
    out = tmp_path / "check.json"
    assert device_check.main(["--preset", "tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out

    assert result["preset"] == "tiny" and result["small_cpu_version"] and result["platform"] == "cpu"
    dense = [r for r in result["decode"] if r["layout"] == "dense"]
    paged = [r for r in result["decode"] if r["layout"] == "paged"]
    assert [r["rows"] for r in dense] == [8, 32] and all(r["tokens_per_s"] > 0 for r in dense)
    assert [r["rows"] for r in paged] == [8, 32] and all("no paged kernel" in r["error"] for r in paged)
    assert "decode paged rows=8: failed (RuntimeError: no paged kernel on this device)" in printed
    assert [r["attention"] for r in result["update"]] == ["xla", "dot_product_attention"]
    assert all(r["step_ms"] > 0 and r["model_flops"] > 0 for r in result["update"])
    assert result["advantage_kernel_ms"] > 0
    # A CPU has no peak in the tables: utilisations are n/a, not invented.
    assert result["decode_mbu"] is None and result["update_mfu"] is None
    last = printed.strip().splitlines()[-1]
    assert last.startswith("device_check: device=cpu_") and "decode_mbu=n/a update_mfu=n/a" in last
    assert last.endswith(f"kernel_ms={result['advantage_kernel_ms']:.2f}")


def test_peaks_are_looked_up_by_the_longest_matching_name(device_check):
    assert device_check.peak(device_check.PEAK_HBM, "NVIDIA H100 PCIe") == 2.0e12
    assert device_check.peak(device_check.PEAK_HBM, "NVIDIA H100 80GB HBM3") == 3.35e12
    assert device_check.peak(device_check.PEAK_FLOPS, "TPU v5 lite") == 1.97e14
    assert device_check.peak(device_check.PEAK_HBM, "Some future chip") is None
