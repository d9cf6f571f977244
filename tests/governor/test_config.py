"""The `governor:` section of the config: policy settings validate themselves and the mission end resolves."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from edged.governor import GovernorConfig, mission_end_s


def test_defaults_are_a_valid_auto_policy():
    policy = GovernorConfig()
    assert policy.mode == "auto" and policy.degradation_order == ["fps", "budget", "floor"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "pinned"}, "mode 'pinned' needs pinned_variant"),
        ({"mission_minutes": 10, "mission_end": "18:00"}, "set mission_minutes or mission_end, not both"),
        ({"degradation_order": ["fps", "fps", "floor"]}, "degradation_order must list each of"),
        ({"battery_bands": [{"below_pct": 50}]}, "exactly one of budget_w or runtime_h"),
        ({"mission_end": 1080}, "write the time in quotes"),
        ({"fps_min": 6, "fps_target": 5}, "fps_min (6.0) must not exceed fps_target (5.0)"),
    ],
)
def test_inconsistent_policies_are_refused_with_a_reason(settings, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GovernorConfig.model_validate(settings)


def test_mission_minutes_count_from_the_start():
    assert mission_end_s(GovernorConfig(mission_minutes=25), 100.0, dt.datetime(2025, 6, 1, 12)) == 1600.0


def test_a_time_of_day_already_past_means_tomorrow():
    policy = GovernorConfig(mission_end=dt.time(6, 30))
    assert mission_end_s(policy, 0.0, dt.datetime(2025, 6, 1, 18, 0)) == 12.5 * 3600


def test_a_date_time_end_is_taken_as_given():
    policy = GovernorConfig(mission_end=dt.datetime(2025, 6, 1, 19, 0))
    assert mission_end_s(policy, 10.0, dt.datetime(2025, 6, 1, 18, 0)) == 3610.0


def test_no_mission_end_means_none():
    assert mission_end_s(GovernorConfig(), 0.0, dt.datetime(2025, 6, 1)) is None
