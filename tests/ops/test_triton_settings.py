"""The Triton launch settings: one object per kernel family, read at each call."""

import pytest

pytest.importorskip("triton")

from videomamba.ops.triton import CONV, SCAN, override  # noqa: E402
from videomamba.ops.triton import scan as scan_launch  # noqa: E402


def test_override_changes_and_restores_even_on_error():
    chunk, groups = SCAN.chunk, dict(SCAN.channel_groups)
    with pytest.raises(RuntimeError):
        with override(SCAN, chunk=16, channel_groups={**groups, "backward": 2}):
            assert SCAN.chunk == 16 and SCAN.channel_groups["backward"] == 2
            raise RuntimeError("inside")
    assert SCAN.chunk == chunk and SCAN.channel_groups == groups


def test_override_rejects_a_name_it_does_not_have():
    with pytest.raises(AttributeError, match="ConvSettings has no chunk"):
        with override(CONV, chunk=8):
            pass


def test_launchers_read_the_settings_at_call_time():
    """Nothing is captured at import: the checkpoint interval follows the settings of the moment."""
    long = SCAN.short_sequence + 1
    assert scan_launch.checkpoint_interval(long) == SCAN.chunk
    with override(SCAN, chunk=32):
        assert scan_launch.checkpoint_interval(long) == 32
        assert scan_launch.checkpoint_shape(2, 8, 16, 100 + long)[1] == -(-(100 + long) // 32)
    with override(SCAN, short_sequence=long + 1, short_chunk=4):
        assert scan_launch.checkpoint_interval(long) == 4
