"""Sweep the Triton scan's settings on the GPU (one direction, fwd and fwd+bwd, d_inner 768, d_state 16,
fp32 inputs in (b, L, d) memory order as the mixer passes them): segments of the segment-parallel scan
(forced, or chosen from a programs-per-SM target), state split, and the tiles (channels per program,
warps, pipeline stages, chunk, the dB/dC reductions), the backward's recompute window and the summary
blocks of the segment-parallel first pass.
Usage: PYTHONPATH=src python3 benchmarks/scan_gpu_sweep.py [segments] [summaries] [windows] [tiles]
[conv] [paired] [groups] [layouts] [blocks] [registers] [tuning] [tuning2] [short] [short-window] [short-window-2]
(paired: both directions in one launch, ``selective_scan_pair``, with the forward and backward passes'
segments forced apart; groups: the same paired scan with each kernel's lanes laid out differently,
``CHANNEL_GROUPS``, and where its GPU time goes; layouts: the same with each kernel's accesses vectorised
or scalar, ``VECTOR_ACCESS``)
(segments and tiles when none is named)"""

import sys

import torch
import triton.testing

import videomamba.ops.triton.scan as ts
from videomamba.ops.triton import CONV, SCAN
from scan_gpu import _graph_ms, inputs, warm_up_gpu  # benchmarks/ is on the path when this script runs
from videomamba.ops import selective_scan

TILE_FIELDS = ("BLOCK_D", "NUM_WARPS", "STAGES", "N_SPLIT", "CHUNK")
SEGMENT_FIELDS = ("SEGMENTS", "N_SPLIT", "PROGRAMS_PER_SM")
# (segments, state split, programs per SM (forward, backward)); None: chosen automatically
SEGMENT_SETTINGS = [(1, 1, None), (1, None, None), (None, None, (12, 8)), (None, None, (8, 4)), (None, None, (16, 12)),
                    (None, None, (24, 16)), (None, 1, (12, 8)), (2, 1, None), (4, 1, None), (8, 1, None),
                    (16, 1, None), (32, 1, None)]
# (BLOCK_D, warps, stages, state split, chunk)
TILE_SETTINGS = [(32, 1, 4, None, 64), (32, 1, 3, None, 64), (32, 1, 6, None, 64), (32, 1, 4, 2, 64),
                 (32, 1, 4, None, 16), (32, 1, 4, None, 32), (32, 1, 4, None, 128), (64, 2, 4, None, 64)]
# channel groups per thread (``CHANNEL_GROUPS``) of the kernels: forward, forward summary, window entries,
# backward summary, backward
GROUP_SETTINGS = [(1, 1, 1, 1, 1), (1, 4, 4, 4, 4), (1, 4, 4, 4, 2), (2, 4, 4, 4, 4), (4, 4, 4, 4, 4),
                  (1, 1, 1, 1, 4)]
# (CHANNEL_GROUPS, VECTOR_ACCESS) per kernel, in the same order: the JIT's vectorised accesses (True) against
# scalar ones that leave the tile laid out as the groups say (False)
T, F = True, False
LAYOUT_SETTINGS = [((1, 4, 4, 1, 1), (T, T, T, T, T)), ((1, 4, 4, 1, 1), (T, T, T, T, F)),
                   ((1, 4, 4, 1, 1), (F, F, F, F, F)), ((1, 4, 4, 1, 1), (F, T, T, T, T)),
                   ((1, 4, 4, 1, 1), (T, T, T, F, F)), ((1, 1, 1, 1, 1), (F, F, F, F, F)),
                   ((1, 4, 4, 1, 1), (T, F, F, T, T))]
# channels per program, programs per SM counted by the segment rule (forward, backward), pipeline stages; the
# JIT's vectorised layout gives each thread 4 channels of 4 (BLOCK_D 32) or 2 (16) states
BLOCK_FIELDS = ("BLOCK_D", "PROGRAMS_PER_SM", "STAGES")
BLOCK_SETTINGS = [(32, (12, 8), 4), (32, (24, 10), 4), (32, (16, 10), 4), (16, (12, 8), 4), (16, (24, 12), 4),
                  (16, (16, 16), 4), (16, (24, 12), 3), (16, (24, 20), 4)]
# the backward's register cap (ptxas maxnreg), programs per SM (forward, backward), tile-shaped per-channel
# stores, and whether the backward summaries' accesses are vectorised
REGISTER_FIELDS = ("BACKWARD_MAX_REGISTERS", "PROGRAMS_PER_SM")
# (register cap, programs an SM, vectorised accesses in the backward summaries)
REGISTER_SETTINGS = [(None, (12, 8), True), (None, (12, 8), False), (None, (12, 10), True), (168, (12, 8), True),
                     (168, (12, 12), True), (160, (12, 12), True), (128, (12, 16), True), (128, (12, 8), True)]
# one setting changed at a time from the defaults (first): the paired scan's segments (forward, backward),
# the first pass's summary blocks, the backward's recompute window, the pipeline depth
TUNING_SETTINGS = [{}, {"SEGMENTS": (None, 4)}, {"SEGMENTS": (None, 6)}, {"SEGMENTS": (5, None)},
                   {"SEGMENTS": (3, None)}, {"SUMMARY_CHUNKS": 1}, {"SUMMARY_CHUNKS": 4}, {"BACKWARD_WINDOW": 16},
                   {"STAGES": 3}, {"STAGES": 5}, {"PROGRAMS_PER_SM": (16, 10)}]
# the same after the gate change: the recompute window and checkpoint interval, the gate's tiles
TUNING_SETTINGS_2 = [{}, {"BACKWARD_WINDOW": 4}, {"CHUNK": 32}, {"CHUNK": 32, "BACKWARD_WINDOW": 4},
                     {"SUMMARY_CHUNKS": 1}, {"GATE_BLOCK_L": 16, "GATE_BLOCK_D": 128},
                     {"GATE_BLOCK_L": 64, "GATE_BLOCK_D": 64, "GATE_WARPS": 8}]
# the checkpoint interval of short sequences: defaults (32 below 1024 steps), 16, the sequence length below
# which it applies (0: never, 64 throughout)
SHORT_SETTINGS = [{}, {"SHORT_CHUNK": 16}, {"SHORT_SEQUENCE": 0}, {"SHORT_SEQUENCE": 2048}]
# short sequences checkpointed at the recompute window (8 steps: the backward needs no window-entries pass),
# with summary blocks of 2 (the default) or 8 chunks, up to 2048 steps
SHORT_WINDOW_SETTINGS = [{}, {"SHORT_CHUNK": 8}, {"SHORT_CHUNK": 8, "SUMMARY_CHUNKS": 8},
                         {"SHORT_CHUNK": 8, "SHORT_SEQUENCE": 2048}]
# the backward's recompute window inside the checkpoint interval: (CHUNK, BACKWARD_WINDOW); None: the whole chunk
WINDOW_FIELDS = ("CHUNK", "BACKWARD_WINDOW")
WINDOW_SETTINGS = [(64, None), (64, 32), (64, 16), (64, 8), (32, 16), (32, 8)]
# the first pass's summary blocks (chunks per block; 1024: whole segments, as before) and programs per SM
SUMMARY_FIELDS = ("SUMMARY_CHUNKS", "PROGRAMS_PER_SM")
SUMMARY_SETTINGS = [(1024, None), (1, None), (2, None), (4, None), (2, (16, 12)), (2, (24, 16)), (1, (24, 16))]
# the conv + SiLU kernels' tiles: output-gradient kernel (steps, channels, warps), then the forward and
# input-gradient kernels' (steps, channels, warps)
CONV_FIELDS = ("GRAD_BLOCK_L", "GRAD_BLOCK_D", "GRAD_WARPS", "BLOCK_L", "BLOCK_D", "NUM_WARPS")
CONV_SETTINGS = [(32, 64, 4, 32, 64, 4), (16, 64, 2, 32, 64, 4), (16, 64, 1, 32, 64, 4), (8, 64, 1, 32, 64, 4),
                 (8, 64, 2, 32, 64, 4), (16, 32, 1, 32, 64, 4), (32, 64, 2, 32, 64, 4), (8, 128, 2, 32, 64, 4),
                 (16, 128, 2, 32, 64, 4), (32, 32, 1, 32, 64, 4)]
# both directions in one launch: (forward segments, backward segments); None: chosen
PAIRED_SETTINGS = [(None, None), (None, 3), (None, 4), (None, 5), (None, 8), (8, 5), (2, 1), (2, 2), (1, 1)]
SHAPES = {"segments": ((8, 785), (8, 1569), (8, 3137), (8, 6273), (32, 785), (32, 1569), (32, 6273)),
          "all": ((8, 785), (8, 1569), (8, 3137), (8, 6273), (32, 785), (32, 1569), (32, 3137), (32, 6273)),
          "tiles": ((8, 1569), (32, 1569), (8, 6273))}


def sweep(fields: tuple[str, ...], settings: list, shapes) -> None:
    """One markdown row per (shape, setting): the module settings named in ``fields`` set, then timed."""
    defaults = {f: getattr(SCAN, f.lower()) for f in fields}
    print("| b | L | " + " | ".join(fields) + " | segments fwd/bwd | fwd ms | fwd+bwd ms | fwd+bwd in a CUDA graph ms |")
    print("|---|---|" + "---|" * len(fields) + "---|---|---|---|")
    warm_up_gpu()
    for b, L in shapes:
        x = {k: v.requires_grad_() for k, v in inputs(b, 768, L).items()}
        for setting in settings:
            for field, value in zip(fields, setting):
                setattr(SCAN, field.lower(), value if value is not None or field != "PROGRAMS_PER_SM" else defaults[field])
            used = _segments_used(b, L, x["u"].device)
            fwd = lambda: selective_scan(**x, delta_softplus=True, backend="triton")  # noqa: E731
            grad = torch.randn_like(fwd())
            with torch.no_grad():
                f = triton.testing.do_bench(fwd, rep=50, return_mode="median")
            fb = triton.testing.do_bench(lambda: fwd().backward(grad), rep=50, return_mode="median",
                                         grad_to_none=list(x.values()))
            graphed = _graph_ms(_fresh_step(fwd, grad, list(x.values())), replays=20)  # GPU time, without the host's
            cells = " | ".join("auto" if v is None else str(v) for v in setting)
            print(f"| {b} | {L} | {cells} | {used} | {f:.3f} | {fb:.3f} | {graphed:.3f} |", flush=True)
        for field, value in defaults.items():
            setattr(SCAN, field.lower(), value)


def _paired_call(b: int, L: int):
    """(both directions' scan forward of fresh inputs, its output gradient, the leaves), the backward
    direction reversed, d_inner 768."""
    from videomamba.ops import ScanInputs, ScanOrder, selective_scan_pair

    directions = [{k: v.requires_grad_() for k, v in inputs(b, 768, L, seed=seed).items()} for seed in (0, 1)]
    z = directions[0]["z"]
    scans = [ScanInputs(**{k: v for k, v in x.items() if k != "z"}) for x in directions]
    fwd = lambda: selective_scan_pair(scans[0], scans[1], z, ScanOrder("reverse"), delta_softplus=True)  # noqa: E731
    return fwd, torch.randn_like(fwd()), [v for x in directions for v in x.values()]


def _fresh_step(fwd, grad, leaves):
    """One forward+backward that writes fresh gradients (none accumulated: no extra kernels, and a CUDA
    graph writes them instead of adding to the captured ones)."""
    def step():
        for v in leaves:
            v.grad = None
        fwd().backward(grad)
    return step


def _segments_used(b: int, L: int, device) -> str:
    """The forward's and backward's segment counts of a scan of (extended) batch ``b`` and length ``L``, the
    backward's for the kernel that runs (the Gluon one or the plain one)."""
    chunk = ts.checkpoint_interval(L)
    chunks = -(-L // chunk)
    gluon = ts._gluon_backward(device, ts._window(chunk), 16)
    return "/".join(str(ts._segments(b, 768, chunks, device, backward, gluon=backward and gluon)[1])
                    for backward in (False, True))


def _paired_segments(b: int, L: int, device) -> str:
    """The forward's and backward's segment counts of a paired scan of batch ``b`` and length ``L``."""
    return _segments_used(2 * b, L, device)


def paired_sweep(shapes=((8, 785), (8, 1569), (8, 3137), (8, 6273), (32, 785), (32, 1569))) -> None:
    """Both directions of a mixer in one launch (the backward one reversed), forward+backward, for each
    (forward, backward) segment count of PAIRED_SETTINGS: eager and in a CUDA graph."""
    paired_settings_sweep([{"SEGMENTS": setting} for setting in PAIRED_SETTINGS], shapes=shapes, profiled=())


def report_compiled() -> None:
    """Registers, spills and the state tile's layout of every scan kernel the JIT has compiled so far (what
    the GPU runs, with the JIT's own specialisation of the arguments)."""
    import re

    for name in ("_scan_fwd_kernel", "_scan_fwd_tile_kernel", "_segment_fwd_kernel", "_window_entries_kernel",
                 "_segment_bwd_kernel", "_scan_bwd_kernel", "_scan_bwd_gluon_kernel"):
        for cache in getattr(getattr(ts, name), "device_caches", {}).values():
            for compiled in cache[0].values():
                ttgir = compiled.asm.get("ttgir", "")
                layouts = re.findall(r"#blocked\d* = #ttg.blocked<\{sizePerThread = (\[[^]]*\]), threadsPerWarp = (\[[^]]*\])", ttgir)
                print(f"{name}: registers {getattr(compiled, 'n_regs', '?')}, spills {getattr(compiled, 'n_spills', '?')}, "
                      f"layout conversions {ttgir.count('ttg.convert_layout')}, layouts (per thread, lanes) {layouts[:3]}")


def paired_settings_sweep(settings: list[dict], shapes=SHAPES["all"], profiled=((8, 785), (8, 3137), (32, 785)),
                          profiled_settings: int = 2) -> None:
    """The paired scan forward+backward (eager and in a CUDA graph) under each setting of ``settings`` (module
    fields of ``ops.triton.SCAN`` by upper-case name and their values), each setting's outputs and gradients checked against
    the first's at b 2, L 300, then the registers and layouts the JIT compiled; at the ``profiled``
    shapes, each kernel's GPU time under the first ``profiled_settings`` settings."""
    from torch.profiler import ProfilerActivity, profile

    defaults = {field: getattr(SCAN, field.lower()) for setting in settings for field in setting}

    def use(setting):
        for field, value in {**defaults, **setting}.items():
            setattr(SCAN, field.lower(), dict(value) if isinstance(value, dict) else value)

    def label(setting):
        return ", ".join(f"{field} {tuple(value.values()) if isinstance(value, dict) else value}"
                         for field, value in setting.items()) or "defaults"

    warm_up_gpu()
    fwd, grad, leaves = _paired_call(2, 300)
    first = None
    for setting in settings:
        use(setting)
        for v in leaves:
            v.grad = None
        out = fwd()
        out.backward(grad)
        got = [out.detach()] + [v.grad.clone() for v in leaves if v.grad is not None]
        first = first or got
        worst = max(((a - r).abs().max() / r.abs().max().clamp_min(1e-30)).item() for a, r in zip(got, first))
        print(f"{label(setting)}: largest difference from the first setting (relative to its max) {worst:.2e}")
    report_compiled()
    print("\n| b | L | setting | segments fwd/bwd | fwd+bwd ms | fwd+bwd in a CUDA graph ms |")
    print("|---|---|---|---|---|---|")

    for b, L in shapes:
        fwd, grad, leaves = _paired_call(b, L)
        for setting in settings:
            use(setting)
            fb = triton.testing.do_bench(lambda: fwd().backward(grad), rep=50, return_mode="median",
                                         grad_to_none=leaves)
            graphed = _graph_ms(_fresh_step(fwd, grad, leaves), replays=20)
            print(f"| {b} | {L} | {label(setting)} | {_paired_segments(b, L, grad.device)} | {fb:.3f} | "
                  f"{graphed:.3f} |", flush=True)
        torch.cuda.empty_cache()
    for b, L in profiled:
        fwd, grad, leaves = _paired_call(b, L)
        for setting in settings[:profiled_settings]:
            use(setting)
            step = _fresh_step(fwd, grad, leaves)
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    step()
                torch.cuda.synchronize()
            rows = sorted(((e.key, e.device_time_total / 10 / 1e3) for e in prof.key_averages()), key=lambda r: -r[1])
            print(f"\nb {b}, L {L}, {label(setting)}: " + ", ".join(f"{k[:40]} {ms:.3f}" for k, ms in rows[:9]))
    use({})


def conv_sweep(shapes=((8, 1569), (8, 6273))) -> None:
    """The conv + SiLU (d 768, bf16, channels-last, the reversed order) forward and forward+backward
    for each of CONV_SETTINGS, with the bytes a pass must move over the copy bandwidth as the floor."""
    from videomamba.ops import ScanOrder, sequence_conv_silu

    defaults = {f: getattr(CONV, f.lower()) for f in CONV_FIELDS}
    warm_up_gpu()
    probe = torch.empty(2**28, device="cuda")
    bandwidth = 8 * probe.numel() / (triton.testing.do_bench(lambda: probe.clone(), return_mode="median") * 1e-3)
    probe = None  # free it before the timings
    print("| b | L | " + " | ".join(CONV_FIELDS) + " | fwd ms | fwd+bwd ms | fwd+bwd in a CUDA graph ms | floor fwd / "
          "fwd+bwd ms |")
    print("|---|---|" + "---|" * len(CONV_FIELDS) + "---|---|---|---|")
    for b, L in shapes:
        x = torch.randn(b, L, 768, device="cuda", dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
        weight = torch.randn(768, 1, 4, device="cuda", requires_grad=True)
        bias = torch.randn(768, device="cuda", requires_grad=True)
        elements = b * L * 768
        # forward: x read, out written (bf16); backward: g and x read (bf16), gy written and read (fp32), dx
        # written (a one-kernel backward that recomputes gy at the taps' shifts instead of storing it measured
        # slower: 0.67 against 0.45 ms at b 8, L 6273, docs/benchmarks.md)
        floor_fwd, floor_bwd = 4 * elements / bandwidth * 1e3, 14 * elements / bandwidth * 1e3
        for setting in CONV_SETTINGS:
            for field, value in zip(CONV_FIELDS, setting):
                setattr(CONV, field.lower(), value)
            fwd = lambda: sequence_conv_silu(x, weight, bias, order=ScanOrder("reverse"))  # noqa: E731
            grad = torch.randn_like(fwd())
            with torch.no_grad():
                f = triton.testing.do_bench(fwd, rep=50, return_mode="median")
            fb = triton.testing.do_bench(lambda: fwd().backward(grad), rep=50, return_mode="median",
                                         grad_to_none=[x, weight, bias])
            graphed = _graph_ms(_fresh_step(fwd, grad, [x, weight, bias]), replays=20)
            cells = " | ".join(str(v) for v in setting)
            print(f"| {b} | {L} | {cells} | {f:.3f} | {fb:.3f} | {graphed:.3f} | {floor_fwd:.3f} / "
                  f"{floor_fwd + floor_bwd:.3f} |", flush=True)
    for field, value in defaults.items():
        setattr(CONV, field.lower(), value)


def main() -> None:
    parts = sys.argv[1:] or ["segments", "tiles"]
    if "segments" in parts:
        print("## segment-parallel scan: segments, state split, programs per SM\n")
        sweep(SEGMENT_FIELDS, SEGMENT_SETTINGS, SHAPES["segments"])
    if "summaries" in parts:
        print("\n## the first pass's summary blocks (chunks per block) and programs per SM\n")
        sweep(SUMMARY_FIELDS, SUMMARY_SETTINGS, SHAPES["segments"])
    if "windows" in parts:
        print("\n## the backward's recompute window (checkpoint interval, window)\n")
        sweep(WINDOW_FIELDS, WINDOW_SETTINGS, SHAPES["segments"])
    if "paired" in parts:
        paired_sweep()
    if "groups" in parts:
        print("\n## channel groups per thread (CHANNEL_GROUPS), both directions in one launch\n")
        paired_settings_sweep([{"CHANNEL_GROUPS": dict(zip(SCAN.channel_groups, groups))} for groups in GROUP_SETTINGS])
    if "layouts" in parts:
        print("\n## vectorised or scalar accesses per kernel (VECTOR_ACCESS) and channel groups, both directions in "
              "one launch\n")
        paired_settings_sweep([{"CHANNEL_GROUPS": dict(zip(SCAN.channel_groups, groups)),
                                "VECTOR_ACCESS": dict(zip(SCAN.vector_access, vector))} for groups, vector in LAYOUT_SETTINGS],
                              profiled_settings=3)
    if "registers" in parts:
        print("\n## the backward's register cap, programs per SM in the segment rule, tile-shaped stores and the "
              "backward summaries' accesses, both directions in one launch\n")
        paired_settings_sweep([dict(zip(REGISTER_FIELDS, setting[:2]),
                                    VECTOR_ACCESS={**SCAN.vector_access, "backward summary": setting[2]})
                               for setting in REGISTER_SETTINGS], profiled_settings=4)
    if "tuning" in parts:
        print("\n## segments, summary blocks, recompute window and pipeline stages at the shapes short of 2x, both "
              "directions in one launch\n")
        paired_settings_sweep(TUNING_SETTINGS, shapes=((8, 785), (8, 1569), (32, 785), (8, 3137)),
                              profiled=((8, 785), (8, 1569)), profiled_settings=1)
    if "tuning2" in parts:
        print("\n## recompute window, checkpoint interval, gate and partial-sum tiles, both directions in one launch\n")
        paired_settings_sweep(TUNING_SETTINGS_2, shapes=((8, 785), (8, 1569), (32, 785), (8, 3137)),
                              profiled=((8, 1569), (32, 785)), profiled_settings=1)
    if "short" in parts:
        print("\n## the checkpoint interval of short sequences, both directions in one launch\n")
        paired_settings_sweep(SHORT_SETTINGS, shapes=((8, 785), (32, 785), (8, 1569), (32, 1569)),
                              profiled=((8, 785),), profiled_settings=3)
    if "short-window" in parts:
        print("\n## short sequences checkpointed every recompute window, atomic dB/dC, both directions in one launch\n")
        paired_settings_sweep(SHORT_WINDOW_SETTINGS, shapes=((8, 785), (32, 785), (8, 1569), (32, 1569)),
                              profiled=((8, 785), (32, 785)), profiled_settings=3)
    if "short-window-2" in parts:
        print("\n## short sequences checkpointed every recompute window (8 steps, summary blocks of 8 chunks), both "
              "directions in one launch\n")
        paired_settings_sweep([{}, {"SHORT_CHUNK": 8, "SUMMARY_CHUNKS": 8}],
                              shapes=((8, 785), (32, 785), (8, 1569), (32, 1569)), profiled=((8, 785), (32, 785)))
    if "blocks" in parts:
        print("\n## channels per program (BLOCK_D), programs per SM in the segment rule, pipeline stages, both "
              "directions in one launch\n")
        paired_settings_sweep([dict(zip(BLOCK_FIELDS, setting)) for setting in BLOCK_SETTINGS], profiled_settings=3)
    if "conv" in parts:
        print("\n## the conv + SiLU kernels' tiles\n")
        conv_sweep()
    if "tiles" in parts:
        print("\n## tiles (segments and split automatic)\n")
        sweep(TILE_FIELDS, TILE_SETTINGS, SHAPES["tiles"])


if __name__ == "__main__":
    main()
