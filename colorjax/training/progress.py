"""What a run shows while training: a progress bar, scalars (JSONL, TensorBoard), sample grids.

``metrics.jsonl`` is the run's record (written and flushed row by row); the TensorBoard events
are a view of it. A resumed run drops the rows the interrupted run logged after the restored
step and rewrites the events from the rows kept (tensorboardX buffers events, so a killed run
loses its last ones), so each step is logged once and curves never fold back or break off.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from colorjax.imaging import visual

BAR_KEYS = ("g_l1", "g_adv", "d_real", "d_fake")
RECORD_KEYS = ("step", "split", "time")  # the fields of a metrics.jsonl row that are no scalar


class Reporter:
    """Progress bar plus ``metrics.jsonl`` and TensorBoard events in ``workdir``; a run that
    resumes at ``start_step`` first drops what was logged after it."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        total_steps: int,
        start_step: int,
        batch_size: int,
        enabled: bool = True,
    ):
        self.workdir = Path(workdir)
        self.batch_size = batch_size
        self.enabled = enabled
        self._last_time = time.monotonic()
        self._last_step = start_step
        self.images_per_s = math.nan
        self._start = start_step
        self._logged_at_start: set[str] = set()
        if not enabled:
            return
        (self.workdir / "samples").mkdir(parents=True, exist_ok=True)
        dropped = self._open_logs(start_step)
        self._bar = tqdm(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, mininterval=1.0
        )
        if dropped:
            self.message(
                f"dropped {dropped} log rows of steps after {start_step}: the interrupted run "
                "got past its last checkpoint"
            )

    def _open_logs(self, start_step: int) -> int:
        """Keep ``metrics.jsonl`` up to ``start_step``, rewrite the TensorBoard events from it,
        open both for appending; return how many rows were dropped."""
        jsonl, events = self.workdir / "metrics.jsonl", self.workdir / "tensorboard"
        kept, dropped = drop_rows_after(jsonl, start_step)
        self._logged_at_start = {r["split"] for r in kept if r["step"] == start_step}
        # Without metrics.jsonl (deleted by hand) the events are all there is: they stay.
        previous_events = sorted(events.glob("events.out.tfevents.*")) if jsonl.is_file() else []
        # purge_step: a TensorBoard already showing the interrupted run hides its later events.
        # The suffix keeps file names unique and in order: tensorboardX names them by the
        # second and would overwrite the file of a run that started in the same second.
        self._writer = SummaryWriter(
            str(events), purge_step=start_step + 1, filename_suffix=f".{time.time_ns()}"
        )
        for record in kept:
            self._add_to_tensorboard(record)
        for path in previous_events:  # superseded by the rows just written again
            path.unlink()
        self._jsonl = open(jsonl, "a")  # noqa: SIM115
        return dropped

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        """Record ``values`` at ``step`` (JSONL line and TensorBoard ``prefix/name``); values
        the interrupted run already logged at the restored step are not logged again."""
        if not self.enabled or (step == self._start and prefix in self._logged_at_start):
            return
        record = {
            "step": step,
            "split": prefix,
            "time": time.time(),
            **{k: float(v) for k, v in values.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._add_to_tensorboard(record)

    def _add_to_tensorboard(self, record: dict) -> None:
        for key, value in record.items():
            if key not in RECORD_KEYS:
                tag = f"{record['split']}/{key}"
                self._writer.add_scalar(tag, value, record["step"], walltime=record.get("time"))

    def progress(self, step: int, values: dict[str, float]) -> float:
        """Advance the bar to ``step`` showing losses and images/s; return images/s."""
        now = time.monotonic()
        if step > self._last_step and now > self._last_time:
            self.images_per_s = (step - self._last_step) * self.batch_size / (now - self._last_time)
        self._last_time, self._last_step = now, step
        if self.enabled:
            shown = {k: f"{values[k]:.3f}" for k in BAR_KEYS if k in values}
            shown["img/s"] = f"{self.images_per_s:.1f}"
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(step - self._bar.n)
        return self.images_per_s

    def message(self, text: str) -> None:
        """Print ``text`` without breaking the bar."""
        if self.enabled:
            self._bar.write(text)

    def sample_grid(
        self, step: int, gray: np.ndarray, generated: np.ndarray, real: np.ndarray
    ) -> Path | None:
        """Save ``samples/step_XXXXXXX.png``: one row per image, gray | generated | real (RGB)."""
        if not self.enabled:
            return None
        rows = [[g, f, r] for g, f, r in zip(gray, generated, real, strict=True)]
        path = self.workdir / "samples" / f"step_{step:07d}.png"
        visual.save_png(visual.image_grid(rows, column_titles=["gray", "generated", "real"]), path)
        return path

    def close(self) -> None:
        """Flush and close everything."""
        if self.enabled:
            self._bar.close()
            self._jsonl.close()
            self._writer.close()


def drop_rows_after(path: Path, step: int) -> tuple[list[dict], int]:
    """Rewrite the JSONL file ``path`` (atomically, if anything changes) keeping the records
    of steps up to ``step``, without a line cut short by a killed run; return the records
    kept and how many lines were dropped."""
    if not path.is_file():
        return [], 0
    text = path.read_text()
    lines = text.splitlines()
    kept, kept_lines = [], []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _is_record(record) and record["step"] <= step:
            kept.append(record)
            kept_lines.append(line)
    if len(kept_lines) < len(lines) or not text.endswith("\n"):
        _replace(path, "".join(f"{line}\n" for line in kept_lines).encode())
    return kept, len(lines) - len(kept_lines)


def _is_record(record) -> bool:
    """Whether ``record`` is a row ``Reporter.scalars`` wrote."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("step"), int)
        and isinstance(record.get("split"), str)
    )


def _replace(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename (never half)."""
    temporary = path.with_name(".rewriting.tmp")  # a name TensorBoard does not read
    temporary.write_bytes(content)
    os.replace(temporary, path)
