"""The dataset card (README.md in the export folder), with PNG plots.

Sources: the run manifest (`<run_dir>/manifest.json`: per-stage row counts and reports,
written by the runner after every stage), the exported rows and the pipeline config.
Only row counts, the generate stage's `usage` figures and the validate/split summaries are
taken from the manifest, never free-form report contents of other stages, so redaction
state (kept in `<run_dir>/redact.state/`) cannot reach the card; secrets in the config are
masked by what they are (`mask_secrets`), not by a substring of their key's name.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import yaml

from curate.dataset.plots import lengths, stratum_of
from curate.dataset.splitting import SPLITS

MASK = "***"
# Key names whose (string) value is a secret, matched as whole words of a snake_case name:
# `api_key`, `password`, `auth_token` are; `max_tokens`, `tokenizer`, `token_env` (the *name* of
# the variable that holds one) and `secrets: true` (a switch) are not.
_SECRET_WORDS = frozenset({"secret", "password", "passwd", "passphrase", "salt", "credential", "credentials",
                           "apikey", "token", "key"})
_POINTER_WORDS = frozenset({"env", "file", "path", "name", "names", "id", "ids", "column", "field"})
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)(?P<tail>@)", re.I)
# detect-secrets plugins that recognise a secret by its format (AWS keys, GitHub/Slack/Stripe
# tokens, JWTs, private keys...); the entropy and keyword plugins are left out: they flag
# model names and prose alike.
_NOISY_PLUGINS = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector"})


def is_secret_key(key: str) -> bool:
    """A key whose value is a secret: its last word names one (`api_key`, `db_password`).

    UPPER_CASE keys are entity types (`redact.policies: {PRIVATE_KEY: fail}`), not field names."""
    if key.isupper():
        return False
    words = [w for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", key.strip()) if w]
    words = [w.lower() for w in words]
    if not words or words[-1] in _POINTER_WORDS:
        return False
    return words[-1] in _SECRET_WORDS


def looks_like_secret(value: str) -> bool:
    """A value that is a secret by its format, whatever its key is called (detect-secrets)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
    names = [plugin.__name__ for plugin in classes]
    plugins = [{"name": name} for name in names if name not in _NOISY_PLUGINS]
    with transient_settings({"plugins_used": plugins}):
        return any(True for _ in scan_line(value))


def mask_secrets(value: Any, key: str = "") -> Any:
    """The config with secrets masked by what they are: a string under a secret's name (`api_key`,
    `password`), a password inside a URL, or a value in a known secret format. Numbers, switches
    and ordinary settings (`chunk.max_tokens`, `chunk.tokenizer`) stay as they are."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if is_secret_key(key):
        return MASK
    value = _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<tail>", value)
    return MASK if looks_like_secret(value) else value


def funnel(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished stage but export, in the order they ran: rows in and out per output."""
    ordered = [(n, e) for n, e in _in_run_order(manifest) if n != "export"]
    return [
        {
            "stage": name,
            "status": str(entry.get("status", "")),
            "rows_in": int(entry.get("rows_in", 0) or 0),
            "rows": {str(k): int(v) for k, v in (entry.get("rows") or {}).items()},
            "errors": int(entry.get("errors", 0) or 0),
        }
        for name, entry in ordered
    ]


USAGE_COLUMNS = (
    "answers", "cached_answers", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cost_usd", "cost_usd_paid_this_run",
)


def _number_items(mapping: Any) -> dict[str, float | int]:
    if not isinstance(mapping, dict):
        return {}
    return {str(k): v for k, v in mapping.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def usage_rows(manifest: dict[str, Any]) -> list[tuple[str, dict[str, float | int]]]:
    """Numeric usage figures of every stage report with a `usage` entry (generate, refine, judge).

    `usage` is either flat ({"cost_usd": ..}) or per source ({"generate": {"cost_usd": ..}}).
    """
    found = []
    for name, entry in _in_run_order(manifest):
        usage = (entry.get("report") or {}).get("usage")
        if not isinstance(usage, dict):
            continue
        flat = _number_items(usage)
        if flat:
            found.append((name, flat))
        for source, figures in usage.items():
            numbers = _number_items(figures)
            if numbers:
                found.append((f"{name}/{source}", numbers))
    return found


def funnel_steps(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The `funnel` lists of stage reports, numbers and step names only, without repeats.

    Items are {"step": str, "rows": int} or {"step", "rows_in", "rows_out", "rejected"}
    (the filters' funnel). When a report's funnel names steps of other stages (the dedup
    report holds the whole filters package funnel), those stages' own funnels are skipped.
    """
    steps: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    reports = [(n, (e.get("report") or {}).get("funnel")) for n, e in _in_run_order(manifest)]
    # a consolidated funnel (the dedup report names filter/refine steps) replaces theirs
    covered = {
        item["stage"] for name, items in reports if isinstance(items, list) for item in items
        if isinstance(item, dict) and isinstance(item.get("stage"), str) and item["stage"] != name
    }
    consolidators = {
        name for name, items in reports if isinstance(items, list)
        and any(isinstance(i, dict) and i.get("stage") not in (None, name) for i in items)
    }
    for name, items in reports:
        if not isinstance(items, list) or (name in covered and name not in consolidators):
            continue
        for item in items:
            if not (isinstance(item, dict) and isinstance(item.get("step"), str) and len(item["step"]) <= 80):
                continue
            numbers = {k: item.get(k) for k in ("rows", "rows_in", "rows_out", "rejected")}
            if not any(isinstance(v, int) for v in numbers.values()):
                continue
            stage = item.get("stage") if isinstance(item.get("stage"), str) else name
            row = {"stage": stage, "step": item["step"],
                   "rows_in": numbers["rows_in"] if isinstance(numbers["rows_in"], int) else "",
                   "rows_out": next((v for v in (numbers["rows_out"], numbers["rows"]) if isinstance(v, int)), ""),
                   "rejected": numbers["rejected"] if isinstance(numbers["rejected"], int) else ""}
            key = tuple(row.values())
            if key not in seen:
                seen.add(key)
                steps.append(row)
    return steps


def card_sources(manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything `render_card` takes from the manifest (the export's fingerprint covers it)."""
    stages = manifest.get("stages", {})
    return {
        "config_hash": manifest.get("config_hash"),
        "funnel": funnel(manifest),
        "steps": funnel_steps(manifest),
        "usage": usage_rows(manifest),
        "validate": stages.get("validate", {}).get("report"),
        "split": stages.get("split", {}).get("report"),
        "contamination": (stages.get("dedup", {}).get("report") or {}).get("contamination"),
    }


def _in_run_order(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The manifest's own order: the order in which the stages first ran (pipeline order).
    Not `finished_at`, which puts a stage re-run on every run (discover) last."""
    return list(manifest.get("stages", {}).items())


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def contamination_lines(report: dict[str, Any]) -> list[str]:
    """Per eval set: items, examples rejected as containing one, by method (the dedup report's
    `contamination`, written by filter.decontaminate)."""
    sets = report.get("sets") or {}
    if not sets:
        return ["No evaluation sets were listed (`filter.decontaminate.eval_sets`): the training examples were "
                "not checked against any benchmark. The test split is checked against train (see Split)."]
    lines = [f"Every example was checked against {len(sets)} evaluation set(s) by "
             + "; ".join(str(m) for m in report.get("methods") or []) + ". Matching examples were rejected "
             "(`contaminated`); an example matching several sets counts in each.", ""]
    lines.append(_table(["eval set", "items", "items too short", "examples matched", "items matched",
                         "by n-gram", "by MinHash", "by embedding"],
                        [[name, c.get("items"), c.get("items_too_short"), c.get("examples_matched"), c.get("items_matched"),
                          c.get("by_ngram"), c.get("by_minhash"), c.get("by_embedding")] for name, c in sets.items()]))
    return lines


def review_lines(report: dict[str, Any]) -> list[str]:
    """The review stage's counts and audit, as `curate status` and report.md show them."""
    counts = report.get("counts") or {}
    if not counts:
        return ["No review report in the run manifest."]
    left = report.get("left out") or {}
    audit = report.get("audit") or {}
    lines = [
        f"{counts.get('accepted', 0)} accepted, {counts.get('corrected', 0)} corrected and "
        f"{counts.get('rejected', 0)} rejected by reviewers (rejected examples left out); "
        f"{counts.get('pending', 0)} sent for review and not decided yet "
        f"({left.get('pending', 0)} of them left out); {counts.get('never_sent', 0)} never sent "
        f"({left.get('never_sent', 0)} of them left out)."
    ]
    if audit:
        lines.append(f"\nAudit of the never-sent examples: {audit.get('status')} ({audit.get('message')}).")
    return lines


def render_card(
    rows: pl.DataFrame,
    *,
    manifest: dict[str, Any],
    config: dict[str, Any],
    files: list[dict[str, Any]],
    plots: dict[str, str],
    name: str,
    residual: dict[str, Any] | None = None,
    diversity: dict[str, Any] | None = None,
) -> str:
    stages = manifest.get("stages", {})
    strata = stratum_of(rows)
    classes = sorted(set(strata.to_list()))
    per_split = {s: int((rows.get_column("split") == s).sum()) for s in SPLITS}
    out = [f"# {name}: fine-tuning dataset", ""]
    out.append(
        f"{rows.height} examples ({', '.join(f'{s} {n}' for s, n in per_split.items())}), "
        f"task `{config.get('task', {}).get('type', '?')}` "
        f"(`{config.get('task', {}).get('name', '?')}`), produced by assay. "
        f"Config hash `{manifest.get('config_hash', '?')}`."
    )
    out += ["", "## Files", ""]
    out.append(_table(["format", "split", "path", "rows"], [[f["format"], f["split"], f"`{f['path']}`", f["rows"]] for f in files]))
    out += ["", "Chat JSONL records: `{\"messages\": [{\"role\", \"content\"}, ...]}` plus metadata "
            "(example_id, chunk_id, doc_id, task_type, label, split, review_status, grounding_score, "
            "agreement, quality_score). No document appears in two splits."]

    out += ["", "## Funnel", ""]
    steps = funnel(manifest)
    if steps:
        out.append(_table(
            ["stage", "status", "rows in", "rows out", "errors"],
            [[s["stage"], s["status"], s["rows_in"], ", ".join(f"{k}={v}" for k, v in s["rows"].items()), s["errors"]] for s in steps],
        ))
    else:
        out.append("No earlier stage is recorded in the run manifest.")

    detail = funnel_steps(manifest)
    if detail:
        out += ["", "Steps reported by the stages:", ""]
        out.append(_table(["stage", "step", "rows in", "rows out", "rejected"],
                          [[d["stage"], d["step"], d["rows_in"], d["rows_out"], d["rejected"]] for d in detail]))

    out += ["", "## Cost", ""]
    usage = usage_rows(manifest)
    if usage:
        columns = [k for k in USAGE_COLUMNS if any(k in u for _, u in usage)]
        out.append(_table(["source", *columns], [[source, *[u.get(k, "") for k in columns]] for source, u in usage]))
        total = sum(float(u.get("cost_usd", 0.0)) for _, u in usage)
        out.append(f"\nTotal teacher cost recorded: ${total:.4f}.")
    else:
        out.append("No stage recorded a usage report in this run.")
    if "cost_usd" in rows.columns:
        out.append(f"\nTeacher cost attributed to the exported examples: ${float(rows['cost_usd'].sum()):.4f}.")

    out += ["", "## Class distribution", "", f"![labels]({plots['labels']})", ""] if plots else ["", "## Class distribution", ""]
    table_rows = []
    for cls in classes:
        counts = [int(((strata == cls) & (rows.get_column("split") == s)).sum()) for s in SPLITS]
        table_rows.append([cls, *[f"{c} ({c / per_split[s]:.1%})" if per_split[s] else "0" for c, s in zip(counts, SPLITS, strict=True)]])
    out.append(_table(["class", *SPLITS], table_rows))

    out += ["", "## Length distribution (characters)", ""]
    if plots:
        out += [f"![lengths]({plots['lengths']})", ""]
    frame = lengths(rows)
    stats = []
    for column in ("prompt_chars", "response_chars"):
        series = frame.get_column(column)
        if series.len():
            stats.append([column, int(series.min()), int(series.median()), int(series.quantile(0.95)), int(series.max())])  # type: ignore[arg-type]
    out.append(_table(["", "min", "median", "p95", "max"], stats))

    if diversity is not None:
        from curate.dataset.diversity import diversity_lines

        out += ["", *diversity_lines(diversity, diversity.get("plot"))]

    out += ["", "## Validation", ""]
    validate = stages.get("validate", {}).get("report") or {}
    checks = validate.get("checks") or []
    vsum = validate.get("summary") or {}
    if checks:
        out.append(
            f"great-expectations suite: {vsum.get('passed', 0)}/{vsum.get('evaluated', 0)} expectations passed; "
            f"{vsum.get('rejected_dropped', 0)} reviewer-rejected examples left in its input and dropped here "
            "(the review stage removes them first: see Expert review). "
            "Data Docs: `validate.state/data_docs/index.html` in the run directory."
        )
        out.append("")
        out.append(_table(
            ["check", "expectation", "column", "severity", "result", "unexpected"],
            [[c["check"], c["expectation"], c["column"], c["severity"], "pass" if c["success"] else "FAIL", c["unexpected_count"]] for c in checks],
        ))
    else:
        out.append("No validation report in the run manifest.")

    out += ["", "## Expert review", "", *review_lines(stages.get("review", {}).get("report") or {})]

    out += ["", "## Personal data and secrets (residual scan)", ""]
    if residual is None:
        out.append("Redaction was disabled for this run: the final dataset was not re-scanned.")
    else:
        found: dict[str, int] = residual.get("counts") or {}
        out.append(
            f"The final dataset was scanned again with the redaction detectors: {residual.get('total', 0)} "
            f"finding(s) (limit {residual.get('max_residual')})."
        )
        if found:
            out += ["", _table(["entity type", "findings"], [[k, v] for k, v in found.items()])]

    out += ["", "## Contamination", "",
            *contamination_lines((stages.get("dedup", {}).get("report") or {}).get("contamination") or {})]

    out += ["", "## Split", ""]
    split_report = stages.get("split", {}).get("report") or {}
    if split_report:
        leaks = split_report.get("leakage", {})
        ssum = split_report.get("summary") or {}
        group_counts = split_report.get("groups") or {}
        groups = ", ".join(f"{s} {group_counts.get(s, 0)}" for s in SPLITS)
        out.append(
            f"Grouped by `{ssum.get('group_by')}` (groups per split: {groups}), "
            f"stratified by `{ssum.get('stratify_by')}`, ratios {ssum.get('ratios')}, seed {ssum.get('seed')}. "
            f"Leakage check across splits ({leaks.get('method', 'MinHash/LSH')}; MinHash Jaccard >= {leaks.get('threshold')}): "
            f"{leaks.get('pairs_found', 0)} pair(s) found, {leaks.get('dropped', 0)} example(s) dropped, "
            f"{leaks.get('pairs_remaining', 0)} remaining."
        )
        warnings = [w for w in split_report.get("warnings") or [] if isinstance(w, str)]
        if warnings:
            out += ["", "**Split warnings** (scores on these splits say little until they are fixed):", ""]
            out += [f"- {w}" for w in warnings]
    out += ["", "## Config", "", "```yaml", yaml.safe_dump(mask_secrets(config), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(out)
