"""bench.commands: the import table's parser and the summary rows (no commands run)."""

from __future__ import annotations

from bench.commands import importtime_markdown, parse_importtime, summary_rows

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       200 |        300 | encodings
import time:      1000 |       1000 |     scipy.stats
import time:       500 |       2500 |   sklearn.metrics
import time:       400 |       3000 | sklearn
import time:      2000 |       5000 | mlflow
noise that is not an import line
"""


def test_parse_importtime_sums_top_level_imports_by_package():
    parsed = parse_importtime(IMPORTTIME)
    # Nested lines (deeper indent) are inside the next top-level one and not added again.
    assert parsed["by_package"] == {"mlflow": 5.0, "other": 0.3, "sklearn": 3.0}
    assert parsed["total_ms"] == 8.3
    assert parsed["modules"] == 6
    assert parsed["seen"]["sklearn.metrics"] and parsed["seen"]["scipy.stats"]
    assert not parsed["seen"]["training.evaluate"] and not parsed["seen"]["lightgbm"]


def test_markdown_and_summary_rows_name_each_command_and_its_target():
    table = {"promote": {**parse_importtime(IMPORTTIME), "exit": 0}}
    text = importtime_markdown(table, load=1.5)
    assert "| `promote` | 6 | 8 |" in text and "load average 1.5" in text
    fig = {"median": 1.0, "min": 1.0, "max": 1.0, "runs": 1}
    result = {
        "commands": {
            "promote": {"wall": fig, "cpu": fig, "load": fig, "target_wall": 2.0},
            "score 100,000 leads": {
                "wall": {**fig, "median": 4.0},
                "cpu": fig,
                "load": fig,
                "leads_per_s": 25_000,
                "leads_per_cpu_s": 100_000,
                "target_leads_per_s": 20_000,
                "vs_mlflow": 6.0,
            },
        }
    }
    rows = summary_rows(result)
    assert rows[0] == (
        "`promote` (whole process)",
        "1.00 s wall, 1.00 s CPU (load 1.0)",
        "< 2 s wall",
    )
    assert rows[1][1].startswith("25,000 leads/s wall (4.00 s wall")
    assert "6.0× mlflow" in rows[1][1] and "≥ 20,000 leads/s" in rows[1][2]
