"""The kernels compile for a CUDA target (sm_90) down to a cubin, with no GPU needed: catches lowering errors that
the interpreter (which runs the Python directly) cannot see."""

from __future__ import annotations

import inspect

import pytest

from tests.ops.conftest import HAS_TRITON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def _compile(fn, constexprs: dict[str, object], dtype: str) -> dict[str, object]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    sig = {}
    for name in inspect.signature(fn).parameters:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32" if name in ("g_ptr", "part_ptr") else f"*{dtype}"
        else:
            sig[name] = "i32"
    src = ASTSource(fn=JITFunction(fn), signature=sig, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_kernels_compile_for_sm90(dtype: str) -> None:
    pytest.importorskip("triton.backends.nvidia")
    from restore.ops import _conv_ps_kernels as ps
    from restore.ops import _lk_dwconv_kernels as lk

    try:
        asm = _compile(lk.dwconv_fwd, {"K": 9, "HAS_BIAS": True, "ACT": 2, "BLOCK_C": 64, "TILE_H": 2,
                                       "TILE_W": 8}, dtype)
    except (RuntimeError, FileNotFoundError) as e:  # no ptxas / CUDA toolchain in this triton install
        if "ptxas" in str(e).lower():
            pytest.skip(f"CUDA toolchain unavailable: {e}")
        raise
    assert "cubin" in asm
    assert "cubin" in _compile(lk.dwconv_bwd_weight, {"K": 9, "BLOCK_C": 1, "TILE_H": 8, "TILE_W": 32}, dtype)
    consts = {"S": 4, "HAS_BIAS": True, "HAS_RES": True, "HAS_SKIP": True, "ACT": 4, "IEEE": False,
              "DOT_F32": False, "BLOCK_P": 64, "BLOCK_CO": 64, "BLOCK_K": 32}
    assert "cubin" in _compile(ps.conv3x3_ps_fwd, consts, dtype)
