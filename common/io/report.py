"""``<workspace>/report.html``: one self-contained page of a run (``main.py report --workspace RUN``).

Read from the workspace only, TensorFlow-free: ``config.json``, the DLLogger log (``raport.json``: wall time,
throughput, the last validation's metrics), ``curves.png``, ``eval/`` (per-class tables, PR curves, confusion,
``worst/``) and the data check's ``unusable_<split>.tsv``. Pictures are embedded as ``data:`` URIs and the page
has no script, so it opens from disk in any browser with no server. Every text from the run's files (file names,
class names) is HTML-escaped. Sections a run does not have are left out; each present one is a
``<section id=...>`` (:data:`SECTIONS`).
"""
from __future__ import annotations

import base64
import csv
import glob
import html
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple


REPORT = "report.html"
#: section id -> heading, in page order.
SECTIONS = {"summary": "Summary", "curves": "Training curves", "per-class": "Per-class metrics",
            "pr-curves": "Precision-recall", "confusion": "Confusion", "worst": "Worst validation images",
            "data-check": "Data check", "config": "Configuration"}
MAX_TABLE_ROWS = 200  # per-class rows shown (the CSV beside the page holds them all)
MAX_UNUSABLE_SHOWN = 20
_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
          "td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}"
          ".tiles img{max-width:340px;margin:3px}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}")


def write_report(workspace: str, out: Optional[str] = None) -> str:
    """Renders the report of ``workspace`` to ``out`` (default ``<workspace>/report.html``); returns its path.

    Raises:
      FileNotFoundError: ``workspace`` is not a folder or holds no run (no log, no config).
    """
    if not os.path.isdir(workspace):
        raise FileNotFoundError(f"no workspace folder {workspace}")
    log_file, config = _log_file(workspace), _json(os.path.join(workspace, "config.json"))
    if log_file is None and config is None:
        raise FileNotFoundError(f"{workspace} holds no run (no raport.json, no config.json): "
                                "give the --workspace of a train or eval run")
    records = read_records(log_file) if log_file else []
    eval_dir = os.path.join(workspace, "eval")
    sections = {"summary": _summary(workspace, records, config),
                "curves": _picture(os.path.join(workspace, "curves.png")),
                "per-class": _csv_table(os.path.join(eval_dir, "per_class.csv")) + _picture(
                    os.path.join(eval_dir, "per_class_ap.png")),
                "pr-curves": _picture(os.path.join(eval_dir, "pr_curves.png")),
                "confusion": _picture(os.path.join(eval_dir, "confusion.png")) + _top_confusions(eval_dir),
                "worst": _worst(eval_dir),
                "data-check": _data_check(workspace),
                "config": f"<pre>{html.escape(json.dumps(config, indent=1))}</pre>" if config else ""}
    body = "".join(f'<section id="{key}"><h2>{SECTIONS[key]}</h2>{content}</section>'
                   for key, content in sections.items() if content)
    title = html.escape(f"{(config or {}).get('model', 'run')} — {os.path.abspath(workspace)}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{title}</h1>{body}</body></html>")
    out = out or os.path.join(workspace, REPORT)
    with open(out + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(out + ".tmp", out)
    return out


def read_records(log_file: str) -> List[dict]:
    """The ``DLLL`` records of ``log_file``; a line cut short by a crash is passed over."""
    records = []
    with open(log_file, errors="replace") as handle:
        for line in handle:
            if line.startswith("DLLL "):
                try:
                    records.append(json.loads(line[5:]))
                except ValueError:
                    continue
    return records


def _log_file(workspace: str) -> Optional[str]:
    path = os.path.join(workspace, "raport.json")
    return path if os.path.isfile(path) else None


def _json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _picture(path: str, alt: str = "") -> str:
    """``<img>`` with the PNG inlined ('' when there is none)."""
    if not os.path.isfile(path):
        return ""
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    label = html.escape(alt or os.path.basename(path))
    return f'<p><img alt="{label}" title="{label}" src="data:image/png;base64,{data}"></p>'


def _table(rows: Sequence[Sequence], limit: int = MAX_TABLE_ROWS) -> str:
    """Header row + body rows -> an HTML table (cells escaped), cut at ``limit`` rows with a note."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows[1:limit + 1])
    more = f"<p>{len(rows) - 1 - limit} more rows in the CSV file.</p>" if len(rows) - 1 > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _csv_table(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return f"<p>{html.escape(path)}</p>" + _table(rows)


def _summary(workspace: str, records: List[dict], config: Optional[dict]) -> str:
    """Model, epochs, wall time, throughput and the last validation's metrics."""
    epochs = [r for r in records if isinstance(r.get("step"), list) and len(r["step"]) == 1]
    last: Dict[str, float] = {}
    for record in epochs:
        last.update(record.get("data", {}))
    rows = [("model", (config or {}).get("model", "?")), ("workspace", os.path.abspath(workspace)),
            ("epochs logged", len({r["step"][0] for r in epochs})), ("wall time", _duration(wall_seconds(records)))]
    rows += [(key, _number(last[key])) for key in ("train.total_ips", "val.total_ips") if key in last]
    rows += [(key, _number(value)) for key, value in sorted(last.items()) if _headline(key)]
    return _table([("", "value")] + rows)


def _headline(key: str) -> bool:
    """The validation numbers the summary shows: losses, top-1/top-5, COCO AP / AP50 / AP75 / AR@100 (the
    per-size ones stay in the log)."""
    name = key.split("/")[-1]
    return key.startswith("val.") and ("loss" in key or name in ("top1", "top5", "AP", "AP50", "AP75", "ARmax100"))


def wall_seconds(records: List[dict]) -> float:
    """Seconds the run's processes spent (a resume restarts ``elapsedtime``: each process's last value, summed)."""
    total, previous = 0.0, 0.0
    for record in records:
        elapsed = float(record.get("elapsedtime", 0.0))
        if elapsed < previous:
            total += previous
        previous = elapsed
    return total + previous


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m {secs:02d}s" if minutes >= 60 else f"{minutes}m {secs:02d}s"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _top_confusions(eval_dir: str, k: int = 10) -> str:
    """The ``k`` largest off-diagonal cells of ``confusion.csv`` as a table."""
    path = os.path.join(eval_dir, "confusion.csv")
    if not os.path.isfile(path):
        return ""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    names, cells = rows[0][1:], []
    for row in rows[1:]:
        total = sum(int(v) for v in row[1:]) or 1
        cells += [(int(v), row[0], names[j], f"{100.0 * int(v) / total:.1f}")
                  for j, v in enumerate(row[1:]) if names[j] != row[0] and int(v) > 0]
    top = sorted(cells, key=lambda cell: -cell[0])[:k]
    return _table([("true class", "predicted as", "images", "% of the true class")] +
                  [(t, p, n, share) for n, t, p, share in top]) if top else "<p>No confusions.</p>"


def _worst(eval_dir: str) -> str:
    """The ``worst/`` tiles, inlined, with their table."""
    from common.io.gallery import tiles as worst_tiles

    tiles = worst_tiles(eval_dir)
    if not tiles:
        return ""
    images = "".join(_picture(path).replace("<p>", "").replace("</p>", "") for path in tiles)
    return f'<div class="tiles">{images}</div>' + _csv_table(os.path.join(eval_dir, "worst", "worst.csv"))


def _data_check(workspace: str) -> str:
    """Unusable files found before the run, per split (``unusable_<split>.tsv``), the first ones listed."""
    parts = []
    for path in sorted(glob.glob(os.path.join(workspace, "unusable_*.tsv"))):
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter="\t") if row]
        split = os.path.basename(path)[len("unusable_"):-len(".tsv")]
        parts.append(f"<p>{html.escape(split)}: {len(rows)} unusable file(s), left out ({html.escape(path)})</p>" +
                     _table([("file", "problem")] + [tuple(r[:2]) for r in rows], MAX_UNUSABLE_SHOWN))
    return "".join(parts) or "<p>Every file passed the check (no unusable_*.tsv in the workspace).</p>"


def build_parser():
    """The ``main.py report`` argument parser."""
    import argparse

    parser = argparse.ArgumentParser(prog="main.py report", description="Render a run's report.html: config, "
                                     "curves, per-class tables, PR curves, confusion, worst images, data check, "
                                     "wall time and throughput, in one self-contained page.")
    parser.add_argument("--workspace", "--model_dir", "--model-dir", required=True, help="the run's workspace")
    parser.add_argument("--out", help=f"where the page goes (default <workspace>/{REPORT})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``main.py report --workspace RUN [--out FILE]``."""
    args = build_parser().parse_args(argv)
    try:
        print(f"report: {write_report(args.workspace, args.out)}")
    except (FileNotFoundError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    return 0
