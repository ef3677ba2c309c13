"""Write FB15k-237 as kgem reads it (ids, unseen valid/test triples dropped) to .npy files every side loads.

    PYTHONPATH=bench .venv/bin/python -m compare.export [--source ../shared/datasets/fb15k237]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from compare.common import DATA, DEFAULT_SOURCE


def export_data(source: str | Path = DEFAULT_SOURCE, dest: str | Path = DATA / "fb15k237") -> Path:
    """Idempotent: returns ``dest`` at once when its meta.json names the same source."""
    from kgem import load_dataset

    dest, source = Path(dest), Path(source).resolve()
    meta_path = dest / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("source") == str(source):
        return dest
    ds = load_dataset("fb15k237", path=source, on_unseen="drop")
    dest.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, split in ds.splits().items():
        np.save(dest / f"{name}.npy", split.hrt.numpy().astype(np.int64))
        counts[name] = len(split)
    meta = {"source": str(source), "num_entities": ds.num_entities, "num_relations": ds.num_relations,
            "triples": counts, "dropped_unseen": {n: s.stats.get("unseen", 0) for n, s in ds.splits().items()}}
    meta_path.write_text(json.dumps(meta, indent=1))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--dest", default=str(DATA / "fb15k237"))
    args = parser.parse_args()
    print(export_data(args.source, args.dest))


if __name__ == "__main__":
    main()
