"""Accuracy needs that change at run time: commands raise or lower the floor, some only for a while."""

from __future__ import annotations

import pytest

from edged.governor import AccuracyNeeds, FloorCommand


def test_the_configured_floor_holds_until_a_command_changes_it():
    needs = AccuracyNeeds(0.2)
    assert needs.floor_at(0) == 0.2 and needs.describe(0) == "floor 0.200 (configured)"


def test_a_temporary_floor_expires_back_to_what_was_before():
    needs = AccuracyNeeds(0.2).with_floor(0.33, now_s=100, for_s=60, source="operator")
    assert needs.floor_at(100) == 0.33 and needs.floor_at(159.9) == 0.33
    assert needs.expires_at(120) == 160 and "operator, 40 s left" in needs.describe(120)
    assert needs.floor_at(160) == 0.2 and needs.expires_at(160) is None


def test_a_temporary_floor_over_a_lasting_one_returns_to_the_lasting_one():
    needs = AccuracyNeeds(0.0).with_floor(0.25, now_s=0).with_floor(0.33, now_s=10, for_s=30)
    assert needs.floor_at(20) == 0.33
    assert needs.floor_at(41) == 0.25


def test_a_lasting_command_replaces_everything_before_it():
    needs = AccuracyNeeds(0.1).with_floor(0.33, now_s=0, for_s=600).with_floor(0.15, now_s=10)
    assert needs.floor_at(20) == 0.15 and needs.floor_at(700) == 0.15


def test_a_command_can_lower_the_floor_below_the_configured_one():
    assert AccuracyNeeds(0.3).with_floor(0.1, now_s=0, for_s=5).floor_at(1) == 0.1


def test_a_null_floor_command_returns_to_the_configured_floor():
    needs = AccuracyNeeds(0.2).apply(FloorCommand(floor=0.33), now_s=0)
    assert needs.apply(FloorCommand(floor=None), now_s=5).floor_at(6) == 0.2


def test_expired_overrides_are_dropped():
    needs = AccuracyNeeds(0.0).with_floor(0.3, now_s=0, for_s=5).with_floor(0.31, now_s=10, for_s=5)
    assert len(needs.overrides) == 1 and len(needs.pruned(100).overrides) == 0


def test_a_command_payload_is_validated_before_it_touches_the_needs():
    with pytest.raises(ValueError):
        FloorCommand.model_validate({"floor": 1.5})
    with pytest.raises(ValueError):
        FloorCommand.model_validate({"floor": 0.3, "for_s": -1})
    with pytest.raises(ValueError):
        AccuracyNeeds().with_floor(float("nan"), now_s=0)
