"""The chart's side of the server's settings, generated from `modelserver.settings.OPTIONS`.

The settings table is the one source: each row names its env var, its chart value (a
path under `server.`) and that value's JSON schema. From it this module writes

- `chart/templates/_settings.tpl`: the env var -> value path table the ConfigMap
  template ranges over (so the ConfigMap has exactly one key per setting; a row may name
  the template that computes a null value, e.g. from the memory limit), and
- the `server` block of `chart/values.schema.json` (types, bounds, every non-null key required,
  no other key allowed), each value described by its env var and help text, and the
  same block with nothing required as `canary.server` (merged over `server`).

`generate` rewrites both (`make docs` runs it); `check` fails naming the stale file
(`make lint`). A value's default lives in `chart/values.yaml`; the chart tests compare
the rendered defaults with the server's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelserver.settings import OPTIONS, Option

from ops.paths import REPO_ROOT

CHART_DIR = REPO_ROOT / "chart"
SCHEMA = CHART_DIR / "values.schema.json"
TEMPLATE = CHART_DIR / "templates" / "_settings.tpl"
TEMPLATE_NAME = "tf-model-server.settingValues"


class SettingsTableError(ValueError):
    pass


def chart_options(options: Sequence[Option] = OPTIONS) -> list[Option]:
    """The settings the chart sets from values (not those it takes from the pod's own spec)."""
    options = [option for option in options if not option.from_pod]
    missing = [option.env for option in options if not option.value or not option.schema]
    if missing:
        raise SettingsTableError(
            f"{', '.join(missing)}: no chart value in modelserver.settings.OPTIONS "
            "(give the Option a value= path under server. and its JSON schema=)"
        )
    values = [option.value for option in options]
    duplicated = sorted({value for value in values if values.count(value) > 1})
    if duplicated:
        raise SettingsTableError(f"chart values used by more than one setting: {', '.join(duplicated)}")
    return list(options)


def server_schema(options: Sequence[Option] = OPTIONS) -> dict[str, Any]:
    """The `server` block: nested objects by value path, closed and fully required."""
    root: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}, "required": []}
    for option in chart_options(options):
        *parents, leaf = option.value.split(".")
        node = root
        for part in parents:
            if part not in node["properties"]:
                node["properties"][part] = {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {},
                    "required": [],
                }
                node["required"].append(part)
            node = node["properties"][part]
        node["properties"][leaf] = {
            "description": f"{option.env}: {option.help}",
            **copy.deepcopy(option.schema),
        }
        # A null value (derived by the chart) is dropped by helm's values coalescing: not required.
        if "null" not in option.schema.get("type", ()):
            node["required"].append(leaf)
    return root


def settings_template(options: Sequence[Option] = OPTIONS) -> str:
    def row(option: Option) -> str:
        derived = f", derived: {option.derived}" if option.derived else ""
        return f"{option.env}: {{value: {option.value}{derived}}}"

    rows = "\n".join(row(option) for option in chart_options(options))
    return (
        "{{/*\n"
        "Generated from image/modelserver/settings.py by `make docs` (ops.chart_settings): do not edit.\n"
        "Each server setting's environment variable, its value under .Values.server and, where a\n"
        "null value is computed by the chart, the template that computes it. Settings the chart\n"
        "takes from the pod's own spec (the downward API) are in the Deployment, not here.\n"
        "*/}}\n"
        f'{{{{- define "{TEMPLATE_NAME}" -}}}}\n'
        f"{rows}\n"
        "{{- end }}\n"
    )


def without_required(schema: dict[str, Any]) -> dict[str, Any]:
    """The same object schema with nothing required (values merged over a complete block)."""
    partial = {key: value for key, value in schema.items() if key != "required"}
    if "properties" in partial:
        partial["properties"] = {
            key: without_required(value) if value.get("type") == "object" else value
            for key, value in partial["properties"].items()
        }
    return partial


def schema_text(current: str, options: Sequence[Option] = OPTIONS) -> str:
    schema = json.loads(current)
    schema["properties"]["server"] = server_schema(options)
    # canary.server: any of the server's values, merged over `server` for the canary's pods.
    canary = schema["properties"].get("canary")
    if canary is not None:
        canary["properties"]["server"] = {
            "description": "server values of the canary pods, merged over `server`",
            **without_required(server_schema(options)),
        }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def expected() -> dict[Path, str]:
    return {SCHEMA: schema_text(SCHEMA.read_text()), TEMPLATE: settings_template()}


def generate() -> None:
    for path, text in expected().items():
        path.write_text(text)
        print(f"[docs] wrote {path.relative_to(REPO_ROOT)} from modelserver.settings")


def stale() -> list[str]:
    return [
        str(path.relative_to(REPO_ROOT))
        for path, text in expected().items()
        if not path.exists() or path.read_text() != text
    ]
