"""Each tree prints the gfp mask in its own ``___GFP_*`` numbering
(``gfp.GfpLayout``, sources in its docstring and docs/KERNEL-FORMATS.md §1a):
GFP_KERNEL 0x24000c0 (4.4-4.9), 0x14000c0 (4.10-4.17), 0xcc0 (5.1 on);
GFP_HIGHUSER_MOVABLE 0x24200ca, 0x14200ca, 0x1100cca (5.15, with
__GFP_SKIP_KASAN_POISON), 0x100cca (5.18, where that bit is 0 on x86_64).
The model's own values stay 4.6's."""

from __future__ import annotations

import re

import pytest

from kthreads import (GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOFS, Completion,
                      Policy, VmaSpec, alloc_pages)
from kthreads.gfp import GfpLayout, format_gfp, gfp_value
from kthreads.kernel import POLICY_OPS
from util import CONTROLLED, dmesg_texts, exited, pages_left, park_killable, run_controlled, stall_warnings

#: Policy -> (its layout, GFP_KERNEL, GFP_HIGHUSER_MOVABLE as that tree prints them).
EXPECTED: dict[Policy, tuple[GfpLayout, int, int]] = {
    **{p: (GfpLayout.V4_6, 0x24000c0, 0x24200ca)
       for p in (Policy.V4_5, Policy.NONE, Policy.PATCH1, Policy.TIFMEMDIE, Policy.REPORT,
                 Policy.QUEUE, Policy.V4_7, Policy.V4_8, Policy.V4_9)},
    Policy.V4_14: (GfpLayout.V4_14, 0x14000c0, 0x14200ca),
    Policy.V5_15: (GfpLayout.V5_15, 0xcc0, 0x1100cca),
    Policy.V5_18: (GfpLayout.V5_18, 0xcc0, 0x100cca),
}


def test_every_policy_names_a_layout():
    assert set(EXPECTED) == set(Policy)


def test_the_models_values_stay_46s():
    assert int(GFP_KERNEL) == 0x24000c0 and int(GFP_HIGHUSER_MOVABLE) == 0x24200ca
    assert gfp_value(GFP_KERNEL) == 0x24000c0  # the default layout is the model's


@pytest.mark.parametrize("layout, kernel, nofs, movable, atomic", [
    (GfpLayout.V4_6, 0x24000c0, 0x2400040, 0x24200ca, 0x2080020),
    (GfpLayout.V4_14, 0x14000c0, 0x1400040, 0x14200ca, 0x1080020),
    (GfpLayout.V5_15, 0xcc0, 0xc40, 0x1100cca, 0xa20),
    (GfpLayout.V5_18, 0xcc0, 0xc40, 0x100cca, 0xa20),
])
def test_each_layout_encodes_the_composites_as_its_gfp_h(layout, kernel, nofs, movable, atomic):
    assert gfp_value(GFP_KERNEL, layout) == kernel
    assert gfp_value(GFP_NOFS, layout) == nofs
    assert gfp_value(GFP_HIGHUSER_MOVABLE, layout) == movable
    assert gfp_value(GFP_ATOMIC, layout) == atomic
    for mask, name in ((GFP_KERNEL, "GFP_KERNEL"), (GFP_NOFS, "GFP_NOFS"),
                       (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"), (GFP_ATOMIC, "GFP_ATOMIC")):
        assert format_gfp(mask, layout) == name


def test_single_bits_move_and_print_in_mmflags_order():
    mask = GFP_KERNEL | GFP.NOWARN | GFP.ZERO | GFP.NOFAIL
    # __def_gfpflag_names: __GFP_NOWARN, __GFP_NOFAIL, ..., __GFP_ZERO
    assert format_gfp(mask) == "GFP_KERNEL|__GFP_NOWARN|__GFP_NOFAIL|__GFP_ZERO"
    assert gfp_value(mask, GfpLayout.V4_14) == 0x14000c0 | 0x200 | 0x8000 | 0x800
    assert gfp_value(mask, GfpLayout.V5_15) == 0xcc0 | 0x2000 | 0x100 | 0x8000
    assert format_gfp(mask, GfpLayout.V5_18) == "GFP_KERNEL|__GFP_NOWARN|__GFP_NOFAIL|__GFP_ZERO"
    # Both reclaim bits without a composite print as __GFP_RECLAIM (GFP_NOIO first, though).
    assert format_gfp(GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM | GFP.HIGHMEM) == "GFP_NOIO|__GFP_HIGHMEM"


def test_cold_exists_up_to_414_only():
    assert format_gfp(GFP_KERNEL | GFP.COLD, GfpLayout.V4_6) == "GFP_KERNEL|__GFP_COLD"
    assert format_gfp(GFP_KERNEL | GFP.COLD, GfpLayout.V4_14) == "GFP_KERNEL|__GFP_COLD"
    assert gfp_value(GFP_KERNEL | GFP.COLD, GfpLayout.V4_14) == 0x14001c0
    # 4.15 removed __GFP_COLD: the model's bit has no counterpart in 5.x.
    assert gfp_value(GFP_KERNEL | GFP.COLD, GfpLayout.V5_15) == 0xcc0
    assert format_gfp(GFP_KERNEL | GFP.COLD, GfpLayout.V5_15) == "GFP_KERNEL"


def header(texts: list[str]) -> str:
    return next(t for t in texts if " invoked oom-killer: " in t)


@pytest.mark.parametrize("policy", list(Policy))
def test_the_oom_header_prints_gfp_kernel_in_the_trees_numbering(policy):
    layout, kernel, _ = EXPECTED[policy]
    assert POLICY_OPS[policy].gfp_layout is layout
    line = header(dmesg_texts(run_controlled("lockup-mutex", policy).kernel))
    if policy is Policy.V4_5:
        assert f"gfp_mask={kernel:#x}, order=0" in line  # 4.5: no %pGg
    else:
        assert re.search(rf"gfp_mask={kernel:#x}\(GFP_KERNEL\), (nodemask=\(null\),  )?order=0", line), line


@pytest.mark.parametrize("policy", list(Policy))
def test_the_oom_header_prints_gfp_highuser_movable_in_the_trees_numbering(boot, policy):
    _, _, movable = EXPECTED[policy]
    k = boot(policy=policy, sched=CONTROLLED, nr_pages=1024, hung_task_timeout=0)
    done = Completion("hog-done")
    hog = k.fork("hog", park_killable(done), vmas=[VmaSpec(pages=pages_left(k, 4))])
    t = k.fork("faulter", lambda t: [alloc_pages(GFP_HIGHUSER_MOVABLE) for _ in range(8)])
    assert k.wait_until(lambda: any(" invoked oom-killer: " in s for s in dmesg_texts(k)), 5, idle_ok=True)
    line = header(dmesg_texts(k))
    name = "" if policy is Policy.V4_5 else "(GFP_HIGHUSER_MOVABLE)"
    assert line.startswith(f"faulter invoked oom-killer: gfp_mask={movable:#x}{name}, "), line
    done.complete_all()
    assert k.wait_until(exited(hog, t), 5)


@pytest.mark.parametrize("policy, value", [(Policy.V4_9, 0x2400040), (Policy.V4_14, 0x1400040)])
def test_the_stall_warning_prints_gfp_nofs_in_the_trees_numbering(boot, policy, value):
    k = boot(policy=policy, sched=CONTROLLED, nr_pages=1024, hung_task_timeout=0, alloc_stall_secs=0.5)
    lines = stall_warnings(k)
    assert lines and all(f", mode:{value:#x}(GFP_NOFS)" in s for s in lines)
