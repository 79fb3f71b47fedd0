"""One self-contained HTML page per run (`<run_dir>/report.html`): what a person opens first.

Everything comes from the run directory (the manifest, the rejected and error artifacts, the
export folder): the summary, the stages, the funnel, the rejection reasons with examples, the
cost, the plots (inlined as base64, so the page can be mailed or archived alone), the
validation results, the split warnings and the dataset card. No script, no external asset.
Text is taken from stage outputs after redaction (`redact/chunks`), never from `chunk/`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import polars as pl

from curate.dataset.card import funnel_steps, usage_rows
from curate.run.rundir import RunDir, atomic_write_text, read_parquet
from schemas.artifacts import (
    DEDUP_REJECTED,
    FILTER_REJECTED,
    INPUT_ERRORS,
    JUDGE_REJECTED,
    REDACTED_CHUNKS,
    REFINE_REJECTED,
    REVIEW_REJECTED,
    SPLITS,
)

EXAMPLES_PER_REASON = 3
EXCERPT_CHARS = 240
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.muted{color:#59636e}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.tile{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px}
.tile b{display:block;font-size:22px}.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:8px 14px}
.bad{background:#ffebe9;border-color:#cf222e}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f3f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#2da44e;height:10px;border-radius:2px}.bar.r{background:#cf222e}
details{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;margin:6px 0}
summary{cursor:pointer;font-weight:600}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;white-space:pre-wrap}
img{max-width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:4px 20px}
.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
"""


# ------------------------------------------------------------------ figures shared with the terminal
def error_frame(run_dir: RunDir) -> pl.DataFrame:
    paths = sorted(run_dir.root / f"{artifact}.parquet" for artifact in INPUT_ERRORS)  # by stage name, as ever
    frames = [read_parquet(p) for p in paths if p.exists()]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()



def run_summary(run_path: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The few figures a person wants after a run: what was exported where, what was rejected
    and why, what it cost, and what to look at (warnings, input errors)."""
    manifest = manifest if manifest is not None else RunDir(run_path).load_manifest()
    stages: dict[str, Any] = manifest.get("stages", {})
    report = lambda name: stages.get(name, {}).get("report") or {}  # noqa: E731
    split = report("split")
    dedup_summary = report("dedup").get("summary") or {}
    reasons = report("dedup").get("reasons") or report("filter").get("reasons") or []
    usage = usage_rows(manifest)
    flat = [u for source, u in usage if "/" in source] or [u for _, u in usage]
    export_dir = (report("export").get("summary") or {}).get("dir")
    warnings = [w for w in split.get("warnings") or [] if isinstance(w, str)]
    failed_checks = (report("validate").get("summary") or {}).get("warnings")
    if failed_checks:
        warnings.append(f"validation checks reported as warnings: {failed_checks}")
    warnings += [f"diversity: {w}" for w in (report("export").get("diversity") or {}).get("warnings") or []]
    return {
        "name": (manifest.get("config") or {}).get("name"),
        "rows": {k: int(split["rows"][k]) for k in SPLITS if k in (split.get("rows") or {})},
        "export_dir": export_dir,
        "chunks_in": dedup_summary.get("chunks_in"),
        "examples_accepted": dedup_summary.get("examples_accepted"),
        "chunk_yield": dedup_summary.get("chunk_yield"),
        "reasons": [r for r in reasons if isinstance(r, dict) and r.get("count")],
        "removed_by_review": sum(int(v) for v in (report("review").get("removed") or {}).values()),
        "cost_usd": sum(float(u.get("cost_usd", 0.0)) for u in flat),
        "cost_paid_this_run_usd": sum(float(u.get("cost_usd_paid_this_run", 0.0)) for u in flat),
        "answers": sum(int(u.get("answers", 0)) for u in flat),
        "cached_answers": sum(int(u.get("cached_answers", 0)) for u in flat),
        "input_errors": sum(int(e.get("errors", 0) or 0) for e in stages.values()),
        "warnings": warnings,
        "failed": [f"{n}: {e.get('message', '')}" for n, e in stages.items() if e.get("status") in {"failed", "partial"}],
    }


def rejection_line(summary: dict[str, Any]) -> str:
    """`1 of 24 chunks gave no example (4.2%); rejections: minority_label 4, ...`."""
    parts = []
    if summary.get("chunks_in"):
        lost = int(summary["chunks_in"]) - int(summary.get("examples_accepted") or 0)
        parts.append(f"{lost} of {summary['chunks_in']} chunks gave no accepted example "
                     f"({lost / summary['chunks_in']:.1%})")
    reasons = summary.get("reasons") or []
    if reasons:
        total = sum(int(r["count"]) for r in reasons)
        top = ", ".join(f"{r['reason']} {r['count']}" for r in reasons[:5])
        parts.append(f"{total} rejections ({top}{', ...' if len(reasons) > 5 else ''})")
    if summary.get("removed_by_review"):
        parts.append(f"{summary['removed_by_review']} removed by reviewers")
    return "; ".join(parts) or "no rejections recorded"


def cost_line(summary: dict[str, Any]) -> str:
    return (f"${summary['cost_usd']:.4f} recorded, ${summary['cost_paid_this_run_usd']:.4f} paid this run "
            f"({summary['answers']} teacher answers, {summary['cached_answers']} from the cache)")


# ------------------------------------------------------------------ the page
def _esc(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c if isinstance(c, _Raw) else _esc(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """HTML built here (already escaped)."""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _rejected(run_dir: RunDir) -> pl.DataFrame:
    """Every rejection of the run once (refine's table repeats filter's with `recovered_by`)."""
    frames = []
    for artifact in (REFINE_REJECTED, FILTER_REJECTED, JUDGE_REJECTED, DEDUP_REJECTED, REVIEW_REJECTED):
        path, stage = run_dir.root / f"{artifact}.parquet", artifact.stage
        if path.exists():
            frame = read_parquet(path)
            if frame.height:
                frames.append(frame.with_columns(pl.lit(stage).alias("stage")))
    if not frames:
        return pl.DataFrame()
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.unique(subset=["item_id", "filter", "reason"], keep="first", maintain_order=True)


def _chunk_excerpts(run_dir: RunDir, chunk_ids: list[str]) -> dict[str, str]:
    path = run_dir.root / f"{REDACTED_CHUNKS}.parquet"  # redacted text only
    if not chunk_ids or not path.exists():
        return {}
    frame = read_parquet(path, columns=["chunk_id", "text"]).filter(pl.col("chunk_id").is_in(chunk_ids))
    return {cid: text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "") for cid, text in frame.iter_rows()}


def _reasons_section(run_dir: RunDir, summary: dict[str, Any]) -> str:
    rejected = _rejected(run_dir)
    counts = summary["reasons"]
    if not counts and not rejected.height:
        return "<p>No rejections recorded.</p>"
    if not counts:
        counts = [{"filter": f, "reason": r, "count": n}
                  for f, r, n in rejected.group_by("filter", "reason").len().sort("len", descending=True).iter_rows()]
    top = max(int(r["count"]) for r in counts)
    parts = [_table(["filter", "reason", "repairable", "count", ""], [
        [r.get("filter"), r.get("reason"), r.get("repairable", ""), r["count"],
         _Raw(f'<div class="bar r" style="width:{120 * int(r["count"]) / top:.0f}px"></div>')] for r in counts
    ], numeric={3})]
    if rejected.height:
        excerpts = _chunk_excerpts(run_dir, rejected.get_column("chunk_id").drop_nulls().unique().to_list())
        for (reason,), group in rejected.group_by("reason", maintain_order=True):
            rows = []
            for row in group.head(EXAMPLES_PER_REASON).iter_rows(named=True):
                recovered = row.get("recovered_by")
                rows.append([row.get("item_id"), row.get("filter"), row.get("detail"),
                             _Raw(f"<code>{_esc(row.get('output_json'))}</code>"),
                             excerpts.get(row.get("chunk_id") or "", ""),
                             f"repaired as {recovered}" if recovered else ""])
            parts.append(f"<details><summary>{_esc(reason)}: {group.height} example(s)</summary>"
                         + _table(["item", "filter", "why", "teacher answer", "passage (redacted)", "refine"], rows)
                         + "</details>")
    return "".join(parts)


def _card_html(export_dir: Path | None) -> str:
    if export_dir is None or not (export_dir / "README.md").exists():
        return "<p>No dataset card (the export has not run, or export.card is off).</p>"
    from markdown_it import MarkdownIt

    text = (export_dir / "README.md").read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        path = export_dir / match.group(2)
        return f"![{match.group(1)}]({_png_data_uri(path)})" if path.suffix == ".png" and path.exists() else match.group(0)

    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", inline, text)
    rendered: str = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return f'<div class="card">{rendered}</div>'


def render_html(run_path: Path) -> str:
    run_dir = RunDir(run_path)
    manifest = run_dir.load_manifest()
    stages: dict[str, Any] = manifest.get("stages", {})
    summary = run_summary(run_path, manifest)
    name = summary.get("name") or run_path.name
    export_dir = Path(summary["export_dir"]) if summary.get("export_dir") else None
    rows = summary["rows"]
    exported = sum(rows.values())
    status = "failed" if summary["failed"] else "complete"
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_esc(name)}: run report</title>",
           f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body><main>',
           f"<h1>{_esc(name)}: run report</h1>",
           f'<div class="muted">run directory <code>{_esc(run_path)}</code> · updated {_esc(manifest.get("updated_at", "?"))} · '
           f'config <code>{_esc(str(manifest.get("config_hash", "?"))[:12])}</code> · written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</div>']
    tiles = [
        ("examples exported", exported, ", ".join(f"{s} {n}" for s, n in rows.items()) or "no export yet"),
        ("chunk yield", f"{summary['chunk_yield']:.1%}" if summary.get("chunk_yield") is not None else "–",
         f"{summary.get('examples_accepted')} examples from {summary.get('chunks_in')} chunks"),
        ("teacher cost", f"${summary['cost_usd']:.4f}", f"${summary['cost_paid_this_run_usd']:.4f} paid this run"),
        ("input errors", summary["input_errors"], "bad files or records, kept as rows"),
        ("status", status, f"{len(summary['warnings'])} warning(s)"),
    ]
    out.append('<div class="tiles">' + "".join(
        f'<div class="tile"><span class="muted">{_esc(t)}</span><b>{_esc(v)}</b><span class="muted">{_esc(d)}</span></div>'
        for t, v, d in tiles) + "</div>")
    if export_dir is not None:
        out.append(f'<p>Dataset: <a href="{_esc(export_dir.as_uri())}">{_esc(export_dir)}</a> · '
                   f"rejections: {_esc(rejection_line(summary))}</p>")
    for problem in summary["failed"]:
        out.append(f'<p class="warn bad">stopped: {_esc(problem)}</p>')
    if summary["warnings"]:
        out.append('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{_esc(w)}</li>" for w in summary["warnings"])
                   + "</ul></div>")

    out.append("<h2>Stages</h2>")
    out.append(_table(["stage", "status", "rows in", "rows out", "errors", "seconds"], [
        [n, e.get("status"), e.get("rows_in", ""), ", ".join(f"{k}={v}" for k, v in (e.get("rows") or {}).items()),
         e.get("errors", 0), f"{float(e.get('seconds', 0) or 0):.1f}"] for n, e in stages.items()
    ], numeric={2, 4, 5}))

    out.append("<h2>Funnel</h2>")
    steps = funnel_steps(manifest)
    widest = max([int(s["rows_in"] or 0) for s in steps] + [int(s["rows_out"] or 0) for s in steps] + [1])
    out.append(_table(["stage", "step", "rows in", "rows out", "rejected", ""], [
        [s["stage"], s["step"], s["rows_in"], s["rows_out"], s["rejected"],
         _Raw(f'<div class="bar" style="width:{200 * int(s["rows_out"] or 0) / widest:.0f}px"></div>')]
        for s in steps
    ], numeric={2, 3, 4}) if steps else "<p>No stage reported a funnel.</p>")

    out.append("<h2>Rejection reasons</h2>")
    out.append(_reasons_section(run_dir, summary))

    out.append("<h2>Cost</h2>")
    usage = usage_rows(manifest)
    if usage:
        columns = sorted({k for _, u in usage for k in u}, key=lambda k: (k != "answers", k))
        out.append(_table(["source", *columns], [[s, *[u.get(k, "") for k in columns]] for s, u in usage],
                          numeric=set(range(1, len(columns) + 1))))
        out.append(f"<p>{_esc(cost_line(summary))}</p>")
    else:
        out.append("<p>No stage recorded teacher usage.</p>")

    plots = sorted((export_dir / "plots").glob("*.png")) if export_dir is not None and (export_dir / "plots").is_dir() else []
    if plots:
        out.append("<h2>Plots</h2>")
        out += [f'<p><img alt="{_esc(p.stem)}" src="{_png_data_uri(p)}"></p>' for p in plots]

    out.append("<h2>Validation</h2>")
    validate = stages.get("validate", {}).get("report") or {}
    checks = validate.get("checks") or []
    if checks:
        vsum = validate.get("summary") or {}
        docs = run_path / "validate.state" / "data_docs" / "index.html"
        link = f' · <a href="{_esc(docs.as_uri())}">Data Docs</a>' if docs.exists() else ""
        out.append(f"<p>great-expectations: {_esc(vsum.get('passed'))}/{_esc(vsum.get('evaluated'))} expectations passed{link}</p>")
        out.append(_table(["check", "expectation", "column", "severity", "result", "unexpected"], [
            [c.get("check"), c.get("expectation"), c.get("column"), c.get("severity"),
             _Raw('<span class="ok">pass</span>' if c.get("success") else '<span class="fail">FAIL</span>'),
             c.get("unexpected_count")] for c in checks
        ], numeric={5}))
    else:
        out.append("<p>The validate stage has not run.</p>")


    errors = error_frame(run_dir)
    if errors.height:
        out.append(f"<h2>Input errors ({errors.height})</h2>")
        out.append(_table(["stage", "source", "reason", "message"], [
            [r.get("stage"), r.get("source"), r.get("reason"), r.get("message")] for r in errors.head(100).iter_rows(named=True)
        ]))

    out.append("<h2>Dataset card</h2>")
    out.append(_card_html(export_dir))
    out.append("</main></body></html>")
    return "\n".join(out)


def write_html_report(run_path: Path) -> Path:
    """`<run_dir>/report.html`, written atomically."""
    target = run_path / "report.html"
    atomic_write_text(target, render_html(run_path))
    return target
