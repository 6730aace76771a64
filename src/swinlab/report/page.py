"""The HTML of ``report.html``: one file, inline CSS, images as ``data:``
URIs, no script and no external URL, so it opens from disk anywhere.

:func:`render_page` takes the context of :func:`swinlab.report.write_report`;
every text from a file or a data set goes through :func:`html.escape`.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_page", "SECTIONS"]

#: section id -> heading, in page order.
SECTIONS = {
    "run": "Run", "curves": "Training curves", "accuracy": "Validation accuracy",
    "classes": "Best and worst classes", "confused": "Most-confused class pairs",
    "confusion-matrix": "Confusion matrix", "examples": "Examples with the last stage's attention",
    "files": "Files",
}

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:12px 0 4px}.muted{color:#777}table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:middle}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}.kv{display:flex;flex-wrap:wrap;gap:16px}
.thumbs{display:flex;gap:4px}figure{margin:0;text-align:center;font-size:11px}figure img{display:block}
.ok{color:#1a7f37}.bad{color:#c62828}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:4px;padding:4px;font-size:12px}.card .pair{display:flex;gap:2px}
.card img{width:72px;height:72px;object-fit:cover}img.wide{max-width:100%}pre{background:#f6f6f6;padding:8px;
overflow:auto;max-height:300px;font-size:12px}nav a{margin-right:10px}
"""


def _img(uri: str | None, alt: str, cls: str = "", size: int | None = None, title: str = "") -> str:
    if not uri:
        return f'<span class="muted">({escape(alt)}: not available)</span>'
    extra = (f' class="{cls}"' if cls else "") + (f' width="{size}" height="{size}"' if size else "")
    return f'<img src="{uri}" alt="{escape(alt)}" title="{escape(title or alt)}"{extra}>'


def _pct(v: Any) -> str:
    return "&ndash;" if v is None else f"{v:.2f}%"


def _thumbs(items: list[dict[str, Any]]) -> str:
    figs = [f'<figure>{_img(t["uri"], t["title"], size=64)}'
            f'<figcaption class="{"ok" if t["ok"] else "bad"}">{escape(t["caption"])}</figcaption></figure>'
            for t in items]
    return f'<div class="thumbs">{"".join(figs)}</div>'


def _run(ctx: dict[str, Any]) -> str:
    tables = "".join(
        f"<div><h3>{escape(title)}</h3><table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows) + "</table></div>"
        for title, rows in ctx["tables"]["sections"])
    cfg = ctx["tables"]["config"]
    full = f"<details><summary>config.json</summary><pre>{escape(cfg)}</pre></details>" if cfg else ""
    return f'<div class="kv">{tables}</div>{full}'


def _accuracy(ctx: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td>{escape(r["what"])}</td><td class="num">{_pct(r["top1"])}</td>'
                   f'<td class="num">{_pct(r["top5"])}</td><td class="num">{r["n"] or ""}</td></tr>'
                   for r in ctx["accuracy"])
    return f"<table><tr><th></th><th>top-1</th><th>top-5</th><th>images</th></tr>{rows}</table>"


def _class_table(entries: list[dict[str, Any]], caption: str) -> str:
    rows = "".join(f'<tr><td title="{escape(e["full"])}">{escape(e["name"])}</td>'
                   f'<td class="num">{_pct(e["accuracy"])}</td><td class="num">{e["count"]}</td>'
                   f'<td>{_thumbs(e["thumbs"])}</td></tr>' for e in entries)
    return (f'<div><h3>{escape(caption)}</h3><table class="classes"><tr><th>class</th><th>top-1</th><th>images</th>'
            f'<th>val images (caption: the prediction)</th></tr>{rows}</table></div>')


def _classes(ctx: dict[str, Any]) -> str:
    best = _class_table(ctx["best"], f"{len(ctx['best'])} best classes")
    worst = _class_table(ctx["worst"], f"{len(ctx['worst'])} worst classes")
    return f'<div class="kv">{best}{worst}</div>'


def _confused(ctx: dict[str, Any]) -> str:
    if not ctx["pairs"]:
        return '<p class="muted">No image was misclassified.</p>'
    rows = "".join(f'<tr><td title="{escape(p["true_name"])}">{escape(p["true_short"])}</td>'
                   f'<td title="{escape(p["predicted_name"])}">{escape(p["predicted_short"])}</td>'
                   f'<td class="num">{p["count"]}</td><td class="num">{p["rate"]:.1f}%</td>'
                   f'<td>{_thumbs(p["thumbs"])}</td></tr>' for p in ctx["pairs"])
    return ('<p>Count: val images of the true class predicted as the other class (the confusion-matrix entry); '
            'rate: their share of the true class\'s images.</p><table class="pairs"><tr><th>true class</th>'
            f'<th>predicted as</th><th>count</th><th>rate</th><th>examples</th></tr>{rows}</table>')


def _confusion(ctx: dict[str, Any]) -> str:
    what = ("all classes" if ctx["num_classes"] <= 30
            else "the classes of the most-confused pairs (rows normalized over all the images of the class)")
    return f'<p>{escape(what)}</p>{_img(ctx["confusion"], "confusion matrix", "wide")}'


def _examples(ctx: dict[str, Any]) -> str:
    cards = []
    for e in ctx["examples"]:
        mark = "ok" if e["ok"] else "bad"
        overlay = _img(e["overlay"], "attention", title=f'{e["image"]}: last stage attention') if e["overlay"] else ""
        cards.append(f'<div class="card"><div class="pair">{_img(e["uri"], e["image"])}{overlay}</div>'
                     f'<div>true: {escape(e["true"])}</div><div class="{mark}">predicted: {escape(e["predicted"])} '
                     f'({e["confidence"]:.0%})</div></div>')
    note = f'<p class="muted">{escape(ctx["examples_note"])}</p>' if ctx["examples_note"] else ""
    return (f"<p>The first {len(ctx['examples'])} images of the evaluated split: the image, the attention its tokens "
            f"receive in the last stage (mean over heads, queries and the stage's blocks), the true and the predicted "
            f"class.</p>{note}<div class=\"grid\">{''.join(cards)}</div>")


def _files(ctx: dict[str, Any]) -> str:
    items = "".join(f'<li><a href="{escape(f["href"])}">{escape(f["href"])}</a>'
                    + (f' <span class="muted">({f["size"] / 1024:.0f} KiB)</span>' if f["size"] is not None else "")
                    + "</li>" for f in ctx["files"])
    return f"<ul>{items}</ul>"


_BODIES = {"run": _run, "curves": lambda c: _img(c["curves"], "training curves (curves.png)", "wide"),
           "accuracy": _accuracy, "classes": _classes, "confused": _confused, "confusion-matrix": _confusion,
           "examples": _examples, "files": _files}


def render_page(ctx: dict[str, Any]) -> str:
    """The whole page (a ``<section id=...>`` per entry of :data:`SECTIONS`)."""
    nav = "".join(f'<a href="#{k}">{escape(v)}</a>' for k, v in SECTIONS.items())
    body = "".join(f'<section id="{k}"><h2>{escape(v)}</h2>{_BODIES[k](ctx)}</section>' for k, v in SECTIONS.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(ctx["title"])}</title>'
            f'<style>{_CSS}</style></head><body><h1>{escape(ctx["title"])}</h1>'
            f'<p class="muted">written {escape(ctx["generated"])} by swinlab {escape(ctx["version"])} in '
            f'{ctx["build_s"]:.1f} s</p><nav>{nav}</nav>{body}</body></html>\n')
