"""Writing the run folder (docs/DESIGN.md "Run folder"): create it safely and describe it.
Its file names and the reader (`load_run`) are `edgecls.core.runs`, shared with evaluate and convert.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import edgecls
from edgecls.core.runs import BACKUP_DIR, CONFIG_FILE, LABELS_FILE, MODEL_FILE, RUN_DIRS, RUN_FILES, SPLIT_FILE
from edgecls.errors import EdgeclsError
from edgecls.files import write_json_atomic
from edgecls.train.options import TrainOptions


def prepare_run_dir(run_dir: str | Path, force: bool = False, resume: bool = False) -> bool:
    """Make `run_dir` ready for training; return True when an earlier run is to be continued.

    A folder that already holds run outputs is refused unless --force (outputs removed, fresh
    run) or --resume (continue from checkpoints/ with the saved config and split).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EdgeclsError(f"{run_dir} is a file; `output` must be a folder for the run", fields="output")
    existing = [name for name in (*RUN_FILES, *RUN_DIRS) if (run_dir / name).exists()]
    if existing and not (force or resume):
        raise EdgeclsError(
            f"{run_dir} already holds a run ({', '.join(existing[:3])}...); "
            "pass `resume` to continue it or `force` to replace it",
            fields=("resume", "force"),
        )
    if existing and force:
        for name in existing:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return resume and (run_dir / CONFIG_FILE).is_file() and (run_dir / SPLIT_FILE).is_file()


def prepare_multi_worker_run_dir(run_dir: str | Path, options: TrainOptions) -> bool:
    """`prepare_run_dir` for the chief of a multi-worker job; True when the folder holds an
    unfinished multi-worker run (a backup and no model.keras) trained with the same options,
    which the job then continues: a scheduler that restarts a lost job runs the same command, so
    this holds with --force too. An unfinished one-machine run, or a multi-worker one with other
    options, is refused rather than mixed in, unless --force replaces it."""
    run_dir = Path(run_dir)
    unfinished = (run_dir / BACKUP_DIR).is_dir() and (run_dir / CONFIG_FILE).is_file() and not (run_dir / MODEL_FILE).exists()
    if unfinished:
        from edgecls.core.runs import load_run

        saved = load_run(run_dir).options
        ours, theirs = options.to_config(), saved.to_config()
        differ = [k for k in sorted(set(ours) | set(theirs)) if k != "epochs" and ours.get(k) != theirs.get(k)]
        if saved.strategy == "multi-worker" and not differ:
            return True
        if not options.force:
            if saved.strategy != "multi-worker":
                raise EdgeclsError(
                    f"{run_dir} holds an unfinished one-machine run: continue it there with `resume`, or pass `force` to replace it",
                    fields=("resume", "force"),
                )
            k = differ[0]
            raise EdgeclsError(
                f"{run_dir} holds an unfinished multi-worker run trained with other options ({k} {theirs.get(k)!r}, "
                f"now {ours.get(k)!r}): start it with the same options, or pass `force` to replace it",
                fields="force",
            )
    prepare_run_dir(run_dir, force=options.force)
    return False


def run_config(data_path: str | Path, dataset, options: TrainOptions) -> dict[str, Any]:
    """config.json's contents (docs/DESIGN.md "Run folder")."""
    return {
        # The path as given (made absolute), so a reload reads what the user pointed at.
        "dataset": {"path": os.path.abspath(data_path), "format": dataset.format, "name": dataset.name},
        "labels": list(dataset.labels),
        "image_size": list(options.size),
        "model": options.model,
        "seed": options.seed,
        "options": options.to_config(),
        "edgecls_version": edgecls.__version__,
    }


def write_run_config(run_dir: Path, data_path: str | Path, dataset, options: TrainOptions) -> dict[str, Any]:
    config = run_config(data_path, dataset, options)
    write_json_atomic(run_dir / CONFIG_FILE, config)
    write_json_atomic(run_dir / LABELS_FILE, list(dataset.labels))
    return config
