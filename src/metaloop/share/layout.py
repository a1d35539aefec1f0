"""What a campaign crate holds: its files, their descriptions and formats, and the version of
the layout (``metaloop import`` refuses a crate of a newer version, in one line)."""

from __future__ import annotations

#: the crate's own manifest (format, version, experiment, sources, artifacts, checksums)
MANIFEST = "metaloop-campaign.json"
FORMAT = "metaloop-campaign"
#: the layout version written; import reads this version and older ones
FORMAT_VERSION = 1
METADATA = "ro-crate-metadata.json"
#: the RO-Crate specification the metadata conforms to
ROCRATE_VERSION = "1.1"

JSON = "application/json"
JSONL = "application/x-ndjson"

#: crate path -> (name, description, encodingFormat) of the fixed files
FILES: dict[str, tuple[str, str, str]] = {
    MANIFEST: ("metaloop manifest", "format, version, experiment name, carried sources and "
               "artifacts, SHA-256 of every file", JSON),
    "config.json": ("config", "the experiment's stored config (what metaloop resume runs)", JSON),
    "evaluations.csv": ("evaluations", "one row per evaluation (metaloop export --format csv)",
                        "text/csv"),
    "evaluations.parquet": ("evaluations (Parquet)", "the same rows as evaluations.csv",
                            "application/vnd.apache.parquet"),
    "events.json": ("event log", "the experiment's events (start, resume, steering, summary, "
                    "provenance, ...) in order", JSON),
    "steering.json": ("steering log", "every steering command and what became of it", JSON),
    "provenance.json": ("provenance", "the data of the experiment's provenance events, one per "
                        "session", JSON),
    "report.html": ("report", "the self-contained HTML report (metaloop report)", "text/html"),
    "store/experiment.json": ("experiment record", "the store's row of the experiment", JSON),
    "store/evaluations.jsonl": ("evaluation rows", "every evaluation as stored (exact)", JSONL),
    "store/checkpoints.jsonl": ("checkpoints", "the optimizer checkpoints as stored", JSONL),
    "store/events.jsonl": ("event rows", "the event log as stored", JSONL),
    "store/controls.jsonl": ("steering rows", "the steering commands as stored", JSONL),
    "store/reports.jsonl": ("report rows", "values reported by running evaluations", JSONL),
    "store/artifacts.jsonl": ("artifact rows", "the artifact entries as stored", JSONL),
}


def table_file(table: str) -> str:
    """The crate path of a store table's rows."""
    return f"store/{table}.jsonl"
