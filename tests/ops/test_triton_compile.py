"""Every Triton kernel variant compiles for sm_90 here, without a GPU (the interpreter test does not
run the compiler)."""

import pytest

from videomamba.ops import triton_compile_check


@pytest.mark.skipif(not triton_compile_check.available(), reason="Triton without its NVIDIA backend tools")
def test_every_kernel_compiles_for_hopper():
    rows = triton_compile_check.kernel_resources(capability=90)
    names = {row.name for row in rows}
    orders = ("", " reversed", " spatial order", " temporal order")
    assert names == {f"{k}{r}" for k in ("forward", "backward", "segment summary forward", "segment summary backward")
                     for r in orders} | {
        "conv+silu forward", "conv+silu output grad", "conv+silu input grad"}
    for row in rows:  # the default tiles fit the registers: a spill would cost local-memory traffic per step
        assert 0 < row.registers <= 255 and row.spill_stack == 0 and row.shared >= 0, row
