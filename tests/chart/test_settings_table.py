"""The chart's settings files are generated from the server's settings table (ops.chart_settings)."""

from __future__ import annotations

import dataclasses

import pytest
from modelserver.settings import OPTIONS, Option
from ops import chart_settings

NEW = Option("new_knob", "TFMS_NEW_KNOB", "--new-knob", int, "1", "a setting added later")


def test_the_committed_files_are_what_the_table_generates():
    assert chart_settings.stale() == [], "run `make docs`"


def test_a_setting_without_a_chart_value_is_named():
    with pytest.raises(chart_settings.SettingsTableError, match=r"^TFMS_NEW_KNOB: no chart value"):
        chart_settings.server_schema([*OPTIONS, NEW])


def test_a_new_row_is_all_the_chart_needs():
    knob = dataclasses.replace(NEW, value="limits.newKnob", schema={"type": "integer", "minimum": 1})
    schema = chart_settings.server_schema([*OPTIONS, knob])
    limits = schema["properties"]["limits"]
    assert limits["properties"]["newKnob"] == {
        "description": "TFMS_NEW_KNOB: a setting added later",
        "type": "integer",
        "minimum": 1,
    }
    assert "newKnob" in limits["required"] and limits["additionalProperties"] is False
    assert "TFMS_NEW_KNOB: {value: limits.newKnob}\n" in chart_settings.settings_template([*OPTIONS, knob])


def test_two_settings_on_one_value_are_refused():
    twin = dataclasses.replace(NEW, value="logLevel", schema={"type": "string"})
    with pytest.raises(chart_settings.SettingsTableError, match="used by more than one setting: logLevel"):
        chart_settings.server_schema([*OPTIONS, twin])
