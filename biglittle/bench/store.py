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
from ..files import read_json, write_text_atomically

RECORDS = "records.jsonl"
RUN = "run.json"


def record_key(task: str, example_id: str, repeat: int, setting_params: dict) -> str:
    """Identifies one generation: the example, the repeat and every parameter of the setting."""
    return json.dumps([task, example_id, repeat, setting_params], sort_keys=True, ensure_ascii=False)


def key_of(record: dict) -> str:
    return record_key(record["task"], record["example_id"], record["repeat"], record["setting"])


class RecordStore:
    def __init__(self, out_dir: Path, fingerprint: dict):
        self.path = out_dir / RECORDS
        out_dir.mkdir(parents=True, exist_ok=True)
        self._check_run(out_dir / RUN, fingerprint)
        self.records = {key_of(record): record for record in self._read()}

    @staticmethod
    def _check_run(path: Path, fingerprint: dict) -> None:
        previous = read_json(path, "delete that folder to start over")
        if previous is None:
            write_text_atomically(path, json.dumps(fingerprint, indent=1))
        elif previous != fingerprint:
            differing = ", ".join(f"{name} {previous.get(name)!r} -> {value!r}"
                                  for name, value in fingerprint.items() if previous.get(name) != value)
            raise BigLittleError(f"{path.parent} holds a run with other settings ({differing}); "
                                 "pass another --out, or delete that folder to start over")

    def _read(self) -> list[dict]:
        """The complete records; a line cut short by a kill is dropped (and the file rewritten without it)."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if len(records) != len(lines) or (lines and not self.path.read_bytes().endswith(b"\n")):
            write_text_atomically(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return records

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
            file.flush()
        self.records[key_of(record)] = record
