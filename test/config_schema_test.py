#!/usr/bin/env python3
"""The dashboard form and EMQX's schema check of priv/config_schema.avsc.

EMQX 5.7-5.8 checks every config update against the Avro schema with
erlavro's JSON decoder and stores whatever passes (the plugin's verdict is
ignored), so the schema must refuse what it can. fastavro follows the Avro
spec as erlavro does; `strict=True` makes a missing field without a default
an error, as erlavro's `required_field_missed`, and `unknown_keys` adds
erlavro's `unknown_field`, which fastavro does not check.

The dashboard draws the form from `$ui` and checks its `rules` in the
browser; `dashboard_refusals` does what emqx-dashboard5's
useGenPluginFormRules.ts and Element Plus do with them (JavaScript's
`RegExp.test` on `String(value)`, a pattern skipped for an empty value,
`required` refusing an empty one).

test/config_cases.json lists configs and the layers that refuse each; the
plugin's column is checked by cargo test (config::shipped_files).

Run by `make test` with the pinned fastavro and pyhocon in _build/pyenv.
"""
import json
import math
import pathlib
import re
import sys
import unittest

import fastavro
from fastavro.validation import validate
from pyhocon import ConfigFactory

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import render_form  # noqa: E402

SCHEMA = json.loads((ROOT / "priv/config_schema.avsc").read_text())
I18N = json.loads((ROOT / "priv/config_i18n.json").read_text())
CASES = json.loads((ROOT / "test/config_cases.json").read_text())["cases"]
SHIPPED = ConfigFactory.parse_file(str(ROOT / "priv/config.hocon")).as_plain_ordered_dict()

# The dashboard's components (emqx-dashboard5 PluginFormKitItem.vue).
COMPONENTS = {"input", "input-password", "input-number", "input-textarea", "input-array", "switch",
              "select", "code-editor", "key-value-editor", "maps-editor"}
UNDEFINED = object()


# ---- EMQX: erlavro's JSON decoding ------------------------------------------

def unknown_keys(value, kind, path=""):
    """Keys the schema does not have, which erlavro refuses (`unknown_field`)."""
    if isinstance(kind, dict) and kind["type"] == "record" and isinstance(value, dict):
        fields = {field["name"]: field["type"] for field in kind["fields"]}
        for key, child in value.items():
            if key not in fields:
                yield path + key
            else:
                yield from unknown_keys(child, fields[key], path + key + ".")
    elif isinstance(kind, dict) and kind["type"] == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from unknown_keys(item, kind["items"], f"{path}[{i}].")
    elif isinstance(kind, dict) and kind["type"] == "map" and isinstance(value, dict):
        for key, child in value.items():
            yield from unknown_keys(child, kind["values"], path + key + ".")


def schema_accepts(config, kind=SCHEMA):
    return not list(unknown_keys(config, kind)) and validate(config, fastavro.parse_schema(kind), raise_errors=False,
                                                             strict=True)


# ---- The dashboard: $ui rules in the browser --------------------------------

def js_string(value):
    """JavaScript's String(value), as RegExp.test sees a field."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def js_number(value):
    """JavaScript's Number(value) for the comparisons of a range rule."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip() or 0)
        except ValueError:
            return math.nan
    return 0.0 if value is None else math.nan


def js_truthy(value):
    return value not in (UNDEFINED, None, "", 0, False) and not (isinstance(value, float) and math.isnan(value))


def rule_refuses(rule, value):
    if rule["type"] == "range":
        number = js_number(value)
        return ("min" in rule and number < rule["min"]) or ("max" in rule and number > rule["max"])
    if rule["type"] == "pattern":
        return js_truthy(value) and re.search(rule["pattern"], js_string(value)) is None
    raise AssertionError(f"rule type {rule['type']} is not emulated here")


def dashboard_refusals(config):
    for path, ui, field in render_form.form_items(SCHEMA["fields"]):
        value = config
        for key in path.split("."):
            value = value.get(key, UNDEFINED) if isinstance(value, dict) else UNDEFINED
        if ui.get("required") and value in (UNDEFINED, None, ""):
            yield path
        elif any(rule_refuses(rule, value) for rule in ui.get("rules", [])):
            yield path


# ---- The cases ---------------------------------------------------------------

def merged(base, overrides):
    """Maps merge, anything else replaces, "$delete" removes the key."""
    if not (isinstance(base, dict) and isinstance(overrides, dict)):
        return overrides
    out = dict(base)
    for key, value in overrides.items():
        if value == "$delete":
            out.pop(key, None)
        else:
            out[key] = merged(out[key], value) if key in out else value
    return out


def leaves(fields=SCHEMA["fields"], prefix=""):
    """Every field that is not a record: each is one item of the form."""
    for field in fields:
        kind = field["type"]
        if isinstance(kind, dict) and kind["type"] == "record":
            yield from leaves(kind["fields"], prefix + field["name"] + ".")
        else:
            yield prefix + field["name"], field


def msgids(value):
    if isinstance(value, dict):
        for child in value.values():
            yield from msgids(child)
    elif isinstance(value, list):
        for child in value:
            yield from msgids(child)
    elif isinstance(value, str) and value.startswith("$"):
        yield value


class Schema(unittest.TestCase):
    def test_parses_and_every_default_is_valid(self):
        fastavro.parse_schema(SCHEMA)

        def walk(fields, prefix):
            for field in fields:
                if "default" in field:
                    self.assertTrue(schema_accepts(field["default"], field["type"]), prefix + field["name"])
                if isinstance(field["type"], dict) and field["type"]["type"] == "record":
                    walk(field["type"]["fields"], prefix + field["name"] + ".")
        walk(SCHEMA["fields"], "")

    def test_shipped_config_hocon_is_valid(self):
        self.assertEqual(list(unknown_keys(SHIPPED, SCHEMA)), [])
        validate(SHIPPED, fastavro.parse_schema(SCHEMA), strict=True)

    def test_enumerated_keys_are_enums_and_required_keys_have_no_default(self):
        for path, field in leaves():
            is_enum = isinstance(field["type"], dict) and field["type"]["type"] == "enum"
            self.assertEqual(is_enum, field.get("$ui", {}).get("component") == "select", path)
            if "default" not in field:
                self.assertTrue(field.get("$ui", {}).get("required"), f"{path}: required by the schema, not by the form")
        # The plugin requires exactly these (config::parse); every other key has a default.
        self.assertEqual([path for path, field in leaves() if "default" not in field], ["kafka.bootstrap_servers"])
        route = SCHEMA["fields"][[f["name"] for f in SCHEMA["fields"]].index("routes")]["type"]["items"]
        self.assertEqual([f["name"] for f in route["fields"] if "default" not in f], ["filter"])


class Form(unittest.TestCase):
    def test_every_leaf_has_a_complete_ui(self):
        for path, field in leaves():
            ui = field.get("$ui")
            self.assertIsInstance(ui, dict, f"{path} has no $ui")
            self.assertIn(ui["component"], COMPONENTS, path)
            self.assertTrue(ui["label"].startswith("$") and ui["description"].startswith("$"), path)
            self.assertIn(ui["flex"], range(1, 25), path)
            kind = field["type"]
            kind_name = kind if isinstance(kind, str) else kind["type"]
            expected = {"boolean": {"switch"}, "int": {"input-number"}, "long": {"input-number"},
                        "enum": {"select"}, "map": {"key-value-editor"},
                        "string": {"input", "input-password", "input-textarea"}}
            if kind_name == "array":
                items = kind["items"]
                expected["array"] = {"maps-editor"} if isinstance(items, dict) else {"input-array"}
            self.assertIn(ui["component"], expected[kind_name], path)
            if "password" in path:
                self.assertEqual(ui["component"], "input-password", path)
            if ui["component"] == "input-number":
                self.assertTrue(any(rule["type"] == "range" for rule in ui.get("rules", [])), f"{path}: no range")
            if ui["component"] == "select":
                self.assertEqual([option["value"] for option in ui["options"]], kind["symbols"], path)
            if ui["component"] == "maps-editor":
                self.assertEqual(list(ui["items"]), [f["name"] for f in kind["items"]["fields"]], path)
            for rule in ui.get("rules", []):
                self.assertIn(rule["type"], ("pattern", "range"), path)
                self.assertTrue(rule["message"].startswith("$"), path)
                if rule["type"] == "pattern":
                    re.compile(rule["pattern"])

    def test_every_msgid_has_english_and_chinese_and_is_used(self):
        used = set(msgids([field.get("$ui") for _, field in leaves()]))
        self.assertEqual(used, set(I18N), "msgids used in $ui and defined in config_i18n.json differ")
        for msgid, texts in I18N.items():
            self.assertEqual(set(texts), {"en", "zh"}, msgid)
            self.assertTrue(texts["en"].strip() and texts["zh"].strip(), msgid)
            # A translation, not a copy, unless it is a proper name such as PLAIN.
            if texts["en"] == texts["zh"]:
                self.assertRegex(texts["en"], r"^[A-Z0-9-]+$", msgid)

    def test_readme_shows_the_current_form(self):
        readme = (ROOT / "README.md").read_text()
        start, end = render_form.readme_block(readme)
        self.assertEqual(readme[start:end], render_form.table(SCHEMA, I18N),
                         "README's form table is stale: run scripts/render_form.py --readme")


class Cases(unittest.TestCase):
    def test_schema_and_dashboard_refuse_exactly_the_listed_cases(self):
        wrong = []
        for case in CASES:
            config = merged(SHIPPED, case["overrides"])
            listed = set(case["rejected_by"])
            refused_by_schema = not schema_accepts(config)
            refusals = list(dashboard_refusals(config))
            if refused_by_schema != ("schema" in listed):
                wrong.append(f"{case['name']}: schema {'refuses' if refused_by_schema else 'accepts'}")
            if bool(refusals) != ("dashboard" in listed):
                wrong.append(f"{case['name']}: dashboard refuses {refusals}")
        self.assertEqual(wrong, [])

    def test_the_dashboard_never_refuses_what_the_plugin_runs(self):
        for case in CASES:
            if "dashboard" in case["rejected_by"]:
                self.assertIn("plugin", case["rejected_by"], case["name"])

    def test_every_layer_is_exercised(self):
        layers = [frozenset(case["rejected_by"]) for case in CASES]
        for combination in ([], ["schema", "plugin"], ["dashboard", "plugin"], ["plugin"], ["schema"],
                            ["dashboard", "schema", "plugin"]):
            self.assertIn(frozenset(combination), layers, combination)


if __name__ == "__main__":
    unittest.main(verbosity=2)
