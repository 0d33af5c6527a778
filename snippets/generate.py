"""Render every snippet from ``spec.toml`` and ``templates/``: ``python -m snippets.generate``.

Writes ``docs/snippets/<language>/<file>``, ``docs/snippets.md`` and the ``/docs/snippets`` page
(``dispatcher/api/static/docs/snippets.html``). ``--check`` only reports stale files (exit 1);
``tests/unit/test_docs_fresh.py`` runs the same comparison.
"""

from __future__ import annotations

import argparse
import html
import json
import pathlib
import sys
import tomllib
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "docs" / "snippets"
MARKDOWN = ROOT / "docs" / "snippets.md"
PAGE = ROOT / "dispatcher" / "api" / "static" / "docs" / "snippets.html"


def load_spec() -> dict[str, Any]:
    """The parsed ``spec.toml``."""
    with open(HERE / "spec.toml", "rb") as fh:
        return tomllib.load(fh)


def _php(value: Any, indent: int = 0) -> str:
    """A PHP array literal (the other scripting languages read JSON literals as they are)."""
    pad = "    " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)} => {_php(v, indent + 1)}," for k, v in value.items()]
        return "[\n" + "\n".join(items) + "\n" + "    " * indent + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_php(v, indent) for v in value) + "]"
    return json.dumps(value)


def literal(value: Any, language: str) -> str:
    """``value`` (strings, numbers, lists, objects) as a native literal of ``language``."""
    if language == "php":
        return _php(value)
    # JSON is valid JavaScript and Ruby for these types, and Python's but for booleans
    # (shortLink): one key per line, lists on one line, trailing commas where the language's
    # style has them.
    if not isinstance(value, dict):
        return _scalar(value, language)
    pad = "    " if language == "python" else "  "
    items = [f"{pad}{json.dumps(k)}: {_scalar(v, language)}" for k, v in value.items()]
    comma = "," if language in ("python", "node", "ruby") else ""
    return "{\n" + ",\n".join(items) + comma + "\n}"


def _scalar(value: Any, language: str) -> str:
    if language == "python" and isinstance(value, bool):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def class_name(name: str) -> str:
    """``send_one`` → ``SendOne``."""
    return "".join(part.title() for part in name.split("_"))


def file_name(snippet: dict[str, Any], language: str, lang: dict[str, Any]) -> str:
    """The snippet's file name (Java wants the class name)."""
    base = class_name(snippet["name"]) if lang.get("classes") else snippet["name"]
    return f"{base}.{lang['ext']}"


def values(spec: dict[str, Any], snippet: dict[str, Any], language: str) -> dict[str, str]:
    """Every ``{{placeholder}}`` of a template, for one snippet in one language."""
    env, defaults = spec["env"], spec["defaults"]
    lang = spec["languages"][language]
    body = snippet.get("body", {})
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return {
        "title": snippet["title"],
        "class": class_name(snippet["name"]),
        "file": file_name(snippet, language, lang),
        "method": snippet.get("method", "GET"),
        "path": snippet.get("path", ""),
        "body": literal(body, language),
        "body_json": compact,
        "body_string": json.dumps(compact, ensure_ascii=False),
        "url_env": env["url"],
        "url_default": defaults["url"],
        "key_env": env["app_key"],
        "key_default": defaults["app_key"],
        "auth_env": env["authorization"],
        "auth_default": defaults["authorization"],
        "id_env": env["message_id"],
        "id_default": defaults["message_id"],
        "secret_env": env["secret"],
        "secret_default": defaults["secret"],
        "wid_env": env["webhook_id"],
        "wts_env": env["webhook_timestamp"],
        "wsig_env": env["webhook_signature"],
        "wbody_env": env["webhook_body"],
        "tolerance": str(defaults["tolerance_s"]),
    }


def render(template: str, given: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; an unknown one is an error, not silent output."""
    out = template
    for key, value in given.items():
        out = out.replace("{{" + key + "}}", value)
    if "{{" in out and "}}" in out[out.index("{{") :]:
        start = out.index("{{")
        raise ValueError(f"unknown placeholder {out[start : out.index('}}', start) + 2]}")
    return out


def render_all() -> dict[pathlib.Path, str]:
    """Every generated file and its content."""
    spec = load_spec()
    files: dict[pathlib.Path, str] = {}
    sections: list[tuple[dict[str, Any], list[tuple[str, str, str]]]] = []
    for snippet in spec["snippet"]:
        rendered = []
        for language, lang in spec["languages"].items():
            # Typed languages may decode with a model of the snippet's own (``templates``).
            name = snippet.get("templates", {}).get(language, snippet["template"])
            source = HERE / "templates" / language / f"{name}.{lang['ext']}.tmpl"
            template = source.read_text()
            text = render(template, values(spec, snippet, language))
            path = OUT / language / file_name(snippet, language, lang)
            files[path] = text
            rendered.append((language, path.relative_to(ROOT).as_posix(), text))
        sections.append((snippet, rendered))
    files[MARKDOWN] = _markdown(spec, sections)
    files[PAGE] = _page(spec, sections)
    return files


INTRO = (
    "Copy-paste examples for what every integration does. They read the API address "
    "and your keys from `SMSDISPATCH_URL`, `SMSDISPATCH_APP_KEY` and `SMSDISPATCH_AUTHORIZATION` "
    "(placeholders otherwise); the status example reads `SMSDISPATCH_MESSAGE_ID`, the webhook "
    "example `WEBHOOK_SECRET`, `WEBHOOK_ID`, `WEBHOOK_TIMESTAMP`, `WEBHOOK_SIGNATURE` and "
    "`WEBHOOK_BODY` (in a real receiver: the request's headers and raw body). The Go, Java "
    "(Jackson) and C# ones decode each answer into types as strict as the original API's "
    "model. Every snippet is executed against a running server by `make snippets-test`."
)


INLINE = "curl"  # the language shown inline in docs/snippets.md: the HTTP exchange itself


def _markdown(spec: dict[str, Any], sections: list[Any]) -> str:
    """An index: one row per snippet, a link per language, and the cURL form of each inline.

    The files under ``docs/snippets/`` and the ``/docs/snippets`` page hold every language in
    full; repeating all of them here would make a page nobody reads to the end.
    """
    languages = spec["languages"]
    lines = [
        "# Snippets",
        "",
        "Generated by `python -m snippets.generate` from `snippets/spec.toml`; do not edit.",
        "",
        INTRO,
        "",
        "Every language in full on one page: `/docs/snippets` of a running API.",
        "",
        "| | " + " | ".join(lang["title"] for lang in languages.values()) + " |",
        "|---" * (len(languages) + 1) + "|",
    ]
    for snippet, rendered in sections:
        anchor = _anchor(snippet["title"])
        links = [f"[{path.rsplit('/', 1)[1]}]({path[len('docs/') :]})" for _, path, _ in rendered]
        lines.append(f"| [{snippet['title']}](#{anchor}) | " + " | ".join(links) + " |")
    lines.append("")
    for snippet, rendered in sections:
        language, path, text = next(r for r in rendered if r[0] == INLINE)
        lang = languages[language]
        lines += [f"## {snippet['title']}", ""]
        lines += [f"{lang['title']}, [`{path}`]({path[len('docs/') :]}):", ""]
        lines += [f"```{lang['fence']}", text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _page(spec: dict[str, Any], sections: list[Any]) -> str:
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>smsdispatch snippets'
        "</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}details{margin:.3em 0}</style>"
        '</head><body><h1>Snippets</h1><p><a href="/docs">API reference</a> · '
        '<a href="/docs/errors">Error catalogue</a></p>',
        f"<p>{html.escape(INTRO)}</p>",
    ]
    for snippet, rendered in sections:
        anchor = snippet["name"].replace("_", "-")
        parts.append(f'<h2 id="{anchor}">{html.escape(snippet["title"])}</h2>')
        for language, path, text in rendered:
            title = html.escape(spec["languages"][language]["title"])
            parts.append(
                f"<details><summary>{title} <small>{html.escape(path)}</small></summary>"
                f"<pre><code>{html.escape(text)}</code></pre></details>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def stale() -> list[pathlib.Path]:
    """Generated files that differ from what the spec and templates produce."""
    return [p for p, text in render_all().items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every generated file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if anything is stale")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for p in old:
            print(f"stale: {p.relative_to(ROOT)}", file=sys.stderr)
        return 1 if old else 0
    for path, text in render_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
