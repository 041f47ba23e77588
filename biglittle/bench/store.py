"""Generation records in a JSONL file, each appended and flushed as soon as it is done.

An interrupted run (Ctrl-C, a kill, a crash) loses at most the generation in flight: on restart
the records already in the file are read back and their generations skipped. `run.json` keeps
what every record depends on (the models, their precision and device, the token budget), so a
rerun with other models cannot mix its records into a different run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BigLittleError
from ..files import append_jsonl, read_json, read_jsonl, write_text_atomically

RECORDS = "records.jsonl"
RUN = "run.json"


def record_key(task: str, example_id: str, repeat: int, setting_params: dict) -> str:
    """Identifies one generation: the example, the repeat and every parameter of the setting."""
    return json.dumps([task, example_id, repeat, setting_params], sort_keys=True, ensure_ascii=False)


def key_of(record: dict) -> str:
    return record_key(record["task"], record["example_id"], record["repeat"], record["setting"])


class RecordStore:
    def __init__(self, out_dir: Path, fingerprint: dict, allow_other_commit: bool = False):
        self.path = out_dir / RECORDS
        out_dir.mkdir(parents=True, exist_ok=True)
        self._check_run(out_dir / RUN, fingerprint, allow_other_commit)
        self.records = {key_of(record): record for record in self._read()}

    @staticmethod
    def _check_run(path: Path, fingerprint: dict, allow_other_commit: bool) -> None:
        """A new run writes its fingerprint; a resumed one must match it, its code's commit too unless allowed."""
        previous = read_json(path, "delete that folder to start over")
        if previous is None:
            write_text_atomically(path, json.dumps(fingerprint, indent=1))
            return
        differing = [name for name, value in fingerprint.items() if previous.get(name) != value]
        if differing == ["commit"] and allow_other_commit:
            return  # each record names its own commit
        if differing == ["commit"]:
            raise BigLittleError(
                f"{path.parent} holds generations of the code at {previous.get('commit')}, this is "
                f"{fingerprint['commit']}; pass --allow-other-commit to add to them anyway, another "
                "--out, or delete that folder to start over"
            )
        if differing:
            changes = ", ".join(f"{name} {previous.get(name)!r} -> {fingerprint[name]!r}" for name in differing)
            raise BigLittleError(
                f"{path.parent} holds a run with other settings ({changes}); "
                "pass another --out, or delete that folder to start over"
            )

    def _read(self) -> list[dict]:
        """The complete records; a line cut short by a kill is dropped from the file."""
        return read_jsonl(
            self.path,
            required=("task", "example_id", "repeat", "setting"),
            remedy="delete those lines, or the folder to start over",
        )

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        append_jsonl(self.path, record)
        self.records[key_of(record)] = record
