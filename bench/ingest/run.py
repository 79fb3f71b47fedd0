"""Ingest + chunk throughput on the shared corpus replicated to >= 50 MB, with baselines.

    .venv/bin/python bench/ingest/run.py [--mb 50] [--workers 2]
    .venv/bin/python bench/ingest/run.py --raw-vs-assay 7     # only the raw parser vs assay table

Each measurement runs in a fresh subprocess so that its peak memory (ru_maxrss) is its own.
1. per format: read (our reader) + chunk (our chunker, 256 words-tokens) of every replicated
   file of that format, one core: documents/s, MB/s, chars/s, peak memory.
2. end to end: the real stages discover -> ingest -> chunk through the Runner on the whole
   folder, 1 process and `--workers` processes.
3. baselines, side by side on the same inputs: PDF text extraction with pypdf (if installed)
   vs pypdfium2; our chunker vs a naive greedy splitter that re-tokenises the growing chunk
   (what a simple recursive splitter with a token-count length function does).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus" / "sp800-53r4"
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_corpus(target: Path, megabytes: float) -> dict[str, int]:
    """Copies of the corpus (md, html, docx, pdf, jsonl); text formats get a per-copy line so
    their documents differ; PDF/DOCX copies are byte-identical (read again all the same)."""
    sources = sorted((CORPUS / "docs").glob("*.md")) + sorted((CORPUS / "formats").iterdir()) + [CORPUS / "controls.jsonl"]
    per_copy = sum(p.stat().st_size for p in sources)
    copies = int(megabytes * 1024 * 1024 // per_copy) + 1
    for n in range(copies):
        folder = target / f"copy{n:03d}"
        folder.mkdir(parents=True)
        for path in sources:
            out = folder / path.name
            if path.suffix == ".md":
                out.write_text(f"Copy {n} of the manual.\n\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
            elif path.suffix == ".html":
                out.write_text(path.read_text(encoding="utf-8").replace("<body>", f"<body><p>Copy {n}.</p>", 1), encoding="utf-8")
            elif path.suffix == ".jsonl":
                lines = path.read_text(encoding="utf-8").splitlines()
                out.write_text("\n".join(line.replace('"statement": "', f'"statement": "(copy {n}) ', 1) for line in lines) + "\n", encoding="utf-8")
            else:
                shutil.copy(path, out)
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return {"copies": copies, "files": copies * len(sources), "bytes": total}


# ------------------------------------------------------------------ phases (subprocesses)


def phase_format(folder: Path, fmt: str) -> dict[str, object]:
    from curate.ingest.chunker import HEADED_FORMATS, chunk_text
    from curate.ingest.config import ChunkConfig, IngestConfig
    from curate.ingest.readers import format_of, reader_for
    from curate.ingest.tokenize import WordsTokenizer

    icfg = IngestConfig(text_column="statement", id_column="id")
    ccfg = ChunkConfig(max_tokens=256)
    tokenizer = WordsTokenizer()
    files = sorted(p for p in folder.rglob("*") if format_of(p) == fmt)
    reader = reader_for(fmt)
    docs = chars = chunks = 0
    read_s = chunk_s = 0.0
    for path in files:
        t0 = time.perf_counter()
        result = reader(path, str(path), icfg)
        t1 = time.perf_counter()
        for document in result.documents:
            chunks += len(chunk_text(document.text, tokenizer, ccfg, headed=fmt in HEADED_FORMATS, pages=document.pages))
            chars += len(document.text)
        chunk_s += time.perf_counter() - t1
        read_s += t1 - t0
        docs += len(result.documents)
    size = sum(p.stat().st_size for p in files)
    seconds = read_s + chunk_s
    return {
        "format": fmt, "files": len(files), "MB": size / 1e6, "documents": docs, "chunks": chunks, "chars": chars,
        "read_s": read_s, "chunk_s": chunk_s, "docs_per_s": docs / seconds, "MB_per_s": size / 1e6 / seconds,
        "Mchars_per_s": chars / 1e6 / seconds, "peak_MB": peak_mb(),
    }


def phase_pipeline(folder: Path, run_dir: Path, workers: int) -> dict[str, object]:
    from curate.config import parse_config
    from curate.ingest.stages import STAGES
    from curate.run.runner import Runner

    cfg = parse_config(
        {
            "run_dir": str(run_dir),
            "executor": {"workers": workers},
            "ingest": {"paths": [str(folder)], "skip_duplicate_files": False, "text_column": "statement", "id_column": "id"},
            "chunk": {"max_tokens": 256},
            "task": {"type": "freeform", "instruction": "(bench)"},
        },
        base_dir=folder,
    )
    t0 = time.perf_counter()
    result = Runner(cfg, STAGES, show_progress=False).run()
    seconds = time.perf_counter() - t0
    stages = {s.name: {"seconds": round(s.seconds, 2), "rows": s.rows} for s in result.stages}
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    docs = stages["ingest"]["rows"]["documents"]  # type: ignore[index]
    return {
        "workers": workers, "seconds": seconds, "MB": size / 1e6, "documents": docs,
        "chunks": stages["chunk"]["rows"]["chunks"], "docs_per_s": docs / seconds, "MB_per_s": size / 1e6 / seconds,  # type: ignore[index]
        "peak_MB": peak_mb(), "peak_worker_MB": children, "stages": stages, "errors": result.errors,
    }


def phase_pdf_baseline(folder: Path, library: str, limit: int) -> dict[str, object]:
    files = sorted(folder.rglob("*.pdf"))[:limit]
    chars = 0
    t0 = time.perf_counter()
    if library == "pypdfium2":
        from curate.ingest.config import IngestConfig
        from curate.ingest.readers.pdf import read_pdf

        for path in files:
            chars += len(read_pdf(path, str(path), IngestConfig()).documents[0].text)
    else:
        from pypdf import PdfReader

        for path in files:
            chars += sum(len(page.extract_text() or "") for page in PdfReader(str(path)).pages)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in files)
    return {"library": library, "files": len(files), "MB": size / 1e6, "chars": chars, "seconds": seconds,
            "Mchars_per_s": chars / 1e6 / seconds, "MB_per_s": size / 1e6 / seconds, "peak_MB": peak_mb()}


def naive_chunks(text: str, max_tokens: int) -> list[str]:
    """Baseline: the same structure (heading sections, paragraphs, sentences) but the usual
    way of counting: re-tokenise every candidate chunk string (no offsets kept)."""
    from curate.ingest.chunker import sections

    token = re.compile(r"\w+|[^\w\s]")
    out: list[str] = []
    for section in sections(text, headed=True):
        current = ""
        for paragraph in text[section.start:section.end].split("\n\n"):
            candidate = f"{current}\n\n{paragraph}" if current else paragraph
            if len(token.findall(candidate)) <= max_tokens:
                current = candidate
                continue
            if current:
                out.append(current)
            current = ""
            for sentence in re.split(r"(?<=[.!?;:])\s+", paragraph):
                candidate = f"{current} {sentence}" if current else sentence
                if len(token.findall(candidate)) <= max_tokens:
                    current = candidate
                else:
                    if current:
                        out.append(current)
                    current = sentence
        if current.strip():
            out.append(current)
    return out


def phase_chunker(folder: Path, which: str, max_tokens: int) -> dict[str, object]:
    from curate.ingest.chunker import chunk_text
    from curate.ingest.config import ChunkConfig
    from curate.ingest.tokenize import WordsTokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.md"))]
    cfg = ChunkConfig(max_tokens=max_tokens)
    tokenizer = WordsTokenizer()
    chars = sum(map(len, texts))
    t0 = time.perf_counter()
    if which == "ours":
        chunks = sum(len(chunk_text(t, tokenizer, cfg, headed=True)) for t in texts)
    else:
        chunks = sum(len(naive_chunks(t, max_tokens)) for t in texts)
    seconds = time.perf_counter() - t0
    return {"chunker": which, "max_tokens": max_tokens, "documents": len(texts), "chunks": chunks, "seconds": seconds,
            "Mchars_per_s": chars / 1e6 / seconds, "peak_MB": peak_mb()}


# ------------------------------------------------------------------ raw parser vs assay, one run


def _raw_markdown(path: Path) -> int:
    return len(path.read_bytes().decode("utf-8"))


def _raw_html(path: Path) -> int:
    from selectolax.lexbor import LexborHTMLParser

    body = LexborHTMLParser(path.read_bytes().decode("utf-8")).body
    return len(body.text()) if body is not None else 0


def _raw_docx(path: Path) -> int:
    import docx

    return sum(len(paragraph.text) for paragraph in docx.Document(str(path)).paragraphs)


def _raw_pdf(path: Path) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    chars = 0
    for index in range(len(document)):
        page = document[index]
        textpage = page.get_textpage()
        chars += len(textpage.get_text_range())
        textpage.close()
        page.close()
    document.close()
    return chars


RAW = {  # the strongest plain parser of each format, as in the table
    "markdown": ("read + decode", _raw_markdown, 20.0, None),
    "html": ("selectolax body text", _raw_html, 10.0, None),
    "docx": ("python-docx paragraphs", _raw_docx, None, 0.8),
    "pdf": ("pypdfium2 text layer", _raw_pdf, None, 0.8),
}


def side_by_side(rounds: int) -> list[dict[str, object]]:
    """Per format, the raw parser and assay's reader + chunker (256 tokens) on the same files,
    one core, alternating in the same process for `rounds` rounds (medians: the machine is shared).
    Wall-clock and CPU time (`time.process_time`, this process only) are both kept: on a
    loaded machine the wall clock also counts the time other processes held the core."""
    import statistics

    from curate.ingest.chunker import HEADED_FORMATS, chunk_text
    from curate.ingest.config import ChunkConfig, IngestConfig
    from curate.ingest.readers import reader_for
    from curate.ingest.tokenize import WordsTokenizer

    files = {
        "markdown": sorted((CORPUS / "docs").glob("*.md")),
        "html": sorted((CORPUS / "formats").glob("*.html")),
        "docx": sorted((CORPUS / "formats").glob("*.docx")),
        "pdf": sorted((CORPUS / "formats").glob("*.pdf")),
    }
    icfg, ccfg, tokenizer = IngestConfig(), ChunkConfig(max_tokens=256), WordsTokenizer()
    rows = []
    for fmt, paths in files.items():
        label, raw, floor, share = RAW[fmt]
        reader = reader_for(fmt)
        raw_times, our_times, raw_cpu, our_cpu = [], [], [], []
        raw_chars = our_chars = chunks = 0
        for _ in range(rounds):
            began, began_cpu = time.perf_counter(), time.process_time()
            raw_chars = sum(raw(path) for path in paths)
            raw_times.append(time.perf_counter() - began)
            raw_cpu.append(time.process_time() - began_cpu)
            began, began_cpu = time.perf_counter(), time.process_time()
            our_chars = chunks = 0
            for path in paths:
                for document in reader(path, path.name, icfg).documents:
                    our_chars += len(document.text)
                    chunks += len(chunk_text(document.text, tokenizer, ccfg, headed=fmt in HEADED_FORMATS, pages=document.pages))
            our_times.append(time.perf_counter() - began)
            our_cpu.append(time.process_time() - began_cpu)
        raw_s, our_s = statistics.median(raw_times), statistics.median(our_times)
        raw_c, our_c = statistics.median(raw_cpu), statistics.median(our_cpu)
        ours, ours_cpu = our_chars / our_s / 1e6, our_chars / our_c / 1e6
        ratio, ratio_cpu = raw_s / our_s, raw_c / our_c
        target = f">= {floor:g} M chars/s" if floor else f">= {share:.0%} of raw"
        met = ours >= floor if floor else ratio >= (share or 0)
        met_cpu = ours_cpu >= floor if floor else ratio_cpu >= (share or 0)
        rows.append({
            "format": fmt, "files": len(paths), "raw parser": label,
            "raw_Mchars_per_s": raw_chars / raw_s / 1e6, "assay_Mchars_per_s": ours,
            "assay_over_raw": ratio, "assay_Mchars_per_cpu_s": ours_cpu, "assay_over_raw_cpu": ratio_cpu,
            "chunks": chunks, "target": target, "met": "yes" if met else "no", "met_cpu": "yes" if met_cpu else "no",
        })
    return rows


def run_phase(*args: str) -> dict[str, object]:
    output = subprocess.run([sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    def fmt(value: object) -> str:
        return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pdf-baseline-files", type=int, default=6, help="PDFs for the (slow) pypdf baseline")
    parser.add_argument("--phase", nargs="+")
    parser.add_argument("--raw-vs-assay", type=int, metavar="ROUNDS", help="only the side-by-side table, ROUNDS rounds")
    args = parser.parse_args()
    if args.raw_vs_assay:
        load_before = os.getloadavg()
        rows = side_by_side(args.raw_vs_assay)
        load_after = os.getloadavg()
        print(
            f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, shared; "
            f"1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after), "
            f"one core, median of {args.raw_vs_assay} alternating rounds; ../shared/corpus/sp800-53r4 (18 md, 3 html, 3 docx, 2 pdf)\n"
        )
        print(table(rows, ["format", "files", "raw parser", "raw_Mchars_per_s", "assay_Mchars_per_s", "assay_over_raw",
                           "assay_Mchars_per_cpu_s", "assay_over_raw_cpu", "chunks", "target", "met", "met_cpu"]))
        return
    if args.phase:
        name, *rest = args.phase
        folder = Path(rest[0])
        if name == "format":
            result = phase_format(folder, rest[1])
        elif name == "pipeline":
            result = phase_pipeline(folder, Path(rest[1]), int(rest[2]))
        elif name == "pdf":
            result = phase_pdf_baseline(folder, rest[1], int(rest[2]))
        else:
            result = phase_chunker(folder, rest[1], int(rest[2]))
        print(json.dumps(result))
        return

    if not CORPUS.exists():
        sys.exit(f"shared corpus not found at {CORPUS}")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp) / "corpus"
        info = build_corpus(folder, args.mb)
        print(f"corpus: {info['copies']} copies, {info['files']} files, {int(info['bytes']) / 1e6:.1f} MB in {folder}", flush=True)

        formats = [run_phase("format", str(folder), fmt) for fmt in ("markdown", "html", "docx", "pdf", "jsonl")]
        pipelines = [run_phase("pipeline", str(folder), str(Path(tmp) / f"run{w}"), str(w)) for w in sorted({1, args.workers})]
        pdf = [run_phase("pdf", str(folder), lib, str(args.pdf_baseline_files)) for lib in ("pypdfium2", "pypdf")] if _has("pypdf") else []
        chunkers = [run_phase("chunker", str(folder / "copy000"), which, "256") for which in ("ours", "naive")]

    report = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}); "
        f"corpus {int(info['bytes']) / 1e6:.1f} MB = {info['copies']} copies of ../shared/corpus/sp800-53r4 (md, html, docx, pdf, jsonl).",
        "",
        "### Per format, read + chunk (256 tokens), one core",
        table(formats, ["format", "files", "MB", "documents", "chunks", "docs_per_s", "MB_per_s", "Mchars_per_s", "read_s", "chunk_s", "peak_MB"]),
        "",
        "### End to end: discover -> ingest -> chunk (Runner, Parquet outputs)",
        table(pipelines, ["workers", "MB", "documents", "chunks", "seconds", "docs_per_s", "MB_per_s", "peak_MB", "peak_worker_MB"]),
        "",
        "stage seconds: " + "; ".join(f"workers={p['workers']}: " + ", ".join(f"{k} {v['seconds']}" for k, v in p["stages"].items()) for p in pipelines),  # type: ignore[attr-defined]
    ]
    if pdf:
        ratio = float(pdf[0]["Mchars_per_s"]) / float(pdf[1]["Mchars_per_s"])  # type: ignore[arg-type]
        report += ["", f"### Baseline: PDF text extraction, same {pdf[0]['files']} PDFs (pypdfium2 / pypdf = {ratio:.1f}x)",
                   table(pdf, ["library", "files", "MB", "chars", "seconds", "Mchars_per_s", "MB_per_s", "peak_MB"])]
    ratio = float(chunkers[1]["seconds"]) / float(chunkers[0]["seconds"])  # type: ignore[arg-type]
    report += ["", f"### Baseline: chunking the 18 Markdown manuals (ours is {ratio:.1f}x faster than re-tokenising candidates)",
               table(chunkers, ["chunker", "max_tokens", "documents", "chunks", "seconds", "Mchars_per_s", "peak_MB"])]
    print("\n".join(report))


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
