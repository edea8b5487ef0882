"""The fuzz targets (fuzz/targets.py) in the test suite: every committed seed and every input
a fuzzer ever crashed on is replayed, and Hypothesis mutates the seeds and makes up new bytes.
A target raises only for a bug (an exception other than the parser's own error, or a broken
invariant). The long runs are `-m slow` here and atheris (fuzz/run.py) off CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtmpd.hls.segmenter import Action, Segmenter, Track

from fuzz import targets

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
NAMES = sorted(targets.TARGETS)
INPUTS = sorted(
    p for kind in ("corpus", "crashes") for p in FUZZ.glob(f"{kind}/*/*") if p.is_file()
)
SEEDS: dict[str, list[bytes]] = {
    name: [p.read_bytes()[:6000] for p in sorted((FUZZ / "corpus" / name).glob("seed-*"))]
    for name in NAMES
}


def test_every_target_has_seeds() -> None:
    assert all(SEEDS[name] for name in NAMES), {n: len(s) for n, s in SEEDS.items()}
    assert len(INPUTS) >= 40


@pytest.mark.parametrize(
    "path", INPUTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}"
)
def test_committed_inputs_replay_cleanly(path: Path) -> None:
    targets.TARGETS[path.parent.name](path.read_bytes())


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A seed with a few byte-level edits, as a fuzzer would make them."""
    data = bytearray(draw(st.sampled_from(SEEDS[name])))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["set", "insert", "delete", "repeat", "interesting"]))
        if edit == "set":
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif edit == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 300))]
        else:  # values that sit on limits: lengths, timestamps, chunk sizes
            value = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF]))
            data[at : at + 4] = value.to_bytes(4, "big")
    return bytes(data)


def inputs(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(name), st.binary(max_size=2048))


FEW = settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
MANY = settings(
    max_examples=20_000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize("name", NAMES)
def test_targets_hold_for_mutated_and_random_bytes(name: str) -> None:
    run = targets.TARGETS[name]
    FEW(given(inputs(name))(run))()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_targets_hold_for_a_long_run(name: str) -> None:
    run = targets.TARGETS[name]
    MANY(given(inputs(name))(run))()


# -- regressions for what fuzzing found ---------------------------------------------------------


def test_forced_cuts_apply_while_waiting_for_a_keyframe_after_a_new_header() -> None:
    """Found by the segmenter target (fuzz/crashes/segmenter/crash-config-change-*): after a
    changed sequence header, frames of the other track went into the open segment with no
    max_fragment or size cut until the changed track sent a keyframe, which might be never."""
    seg = Segmenter(1000, 4000, 20_000)
    seg.configure(Track.VIDEO, changed=True)
    seg.configure(Track.AUDIO, changed=True)
    assert seg.frame(Track.VIDEO, 0, True, 1000) is Action.CUT
    seg.configure(Track.VIDEO, changed=True)  # new resolution; its keyframe never comes
    assert seg.frame(Track.VIDEO, 40, False, 1000) is Action.DROP
    actions = [seg.frame(Track.AUDIO, ts, False, 100) for ts in range(100, 4001, 100)]
    assert actions[:-1] == [Action.WRITE] * 39
    assert actions[-1] is Action.CUT and seg.discontinuity  # at max_fragment, new extradata
    assert seg.frame(Track.AUDIO, 4100, False, 25_000) is Action.CUT  # the size cap holds too
