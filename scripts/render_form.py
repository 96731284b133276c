#!/usr/bin/env python3
"""The EMQX dashboard's plugin form, as a table: what an operator sees.

Walks priv/config_schema.avsc the way the dashboard does (a field with `$ui`
is a form item; a record without one is a group whose fields are walked in
turn) and resolves labels through priv/config_i18n.json.

    scripts/render_form.py            print the table
    scripts/render_form.py --readme   rewrite the table in README.md

test/config_schema_test.py checks that README.md holds the current table.
Standard library only, so it runs with any python3.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN = "<!-- form table: scripts/render_form.py --readme -->"
END = "<!-- end of form table -->"


def load():
    schema = json.loads((ROOT / "priv/config_schema.avsc").read_text())
    i18n = json.loads((ROOT / "priv/config_i18n.json").read_text())
    return schema, i18n


def form_items(fields, prefix=""):
    """(key path, $ui, Avro field) for every form item, in form order."""
    for field in fields:
        path = prefix + field["name"]
        kind = field["type"]
        if "$ui" in field:
            yield path, field["$ui"], field
        elif isinstance(kind, dict) and kind.get("type") == "record":
            yield from form_items(kind["fields"], path + ".")


def text(i18n, msgid, lang):
    return i18n[msgid][lang] if msgid.startswith("$") else msgid


def checks(ui, patterns):
    """The checks the form makes in the browser, shortly."""
    out = ["required"] if ui.get("required") else []
    for rule in ui.get("rules", []):
        if rule["type"] == "range":
            low, high = rule.get("min"), rule.get("max")
            out.append(f"{low} to {high}" if high is not None else f"at least {low}")
        elif rule["type"] == "pattern":
            if rule["message"] not in patterns:
                patterns.append(rule["message"])
            out.append(f"pattern P{patterns.index(rule['message']) + 1}")
    return ", ".join(out)


def table(schema, i18n):
    patterns = []
    lines = ["| key | component | label (en) | label (zh) | checked in the form |", "|---|---|---|---|---|"]
    for path, ui, _ in form_items(schema["fields"]):
        if ui["component"] == "maps-editor":
            columns = ", ".join(f"{name} ({text(i18n, item['label'], 'en')})" for name, item in ui["items"].items())
            component = f"maps-editor: {columns}"
        elif ui["component"] == "select":
            component = "select: " + ", ".join(option["value"] for option in ui["options"])
        else:
            component = ui["component"]
        label_en, label_zh = text(i18n, ui["label"], "en"), text(i18n, ui["label"], "zh")
        lines.append(f"| `{path}` | {component} | {label_en} | {label_zh} | {checks(ui, patterns)} |")
    lines.append("")
    for n, msgid in enumerate(patterns, 1):
        lines.append(f"P{n}: {text(i18n, msgid, 'en')}" + ("  " if n < len(patterns) else ""))
    return "\n".join(lines) + "\n"


def readme_block(readme):
    start, end = readme.index(BEGIN) + len(BEGIN) + 1, readme.index(END)
    return start, end


def main():
    schema, i18n = load()
    rendered = table(schema, i18n)
    if sys.argv[1:] == ["--readme"]:
        path = ROOT / "README.md"
        readme = path.read_text()
        start, end = readme_block(readme)
        path.write_text(readme[:start] + rendered + readme[end:])
    else:
        sys.stdout.write(rendered)


if __name__ == "__main__":
    main()
