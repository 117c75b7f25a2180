"""What a run shows while training: a progress bar, scalars (JSONL, TensorBoard), sample grids."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from colorjax import viz

BAR_KEYS = ("g_l1", "g_adv", "d_real", "d_fake")


class Reporter:
    """Progress bar plus ``metrics.jsonl`` and TensorBoard events in ``workdir``."""

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
        if not enabled:
            return
        (self.workdir / "samples").mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.workdir / "metrics.jsonl", "a")  # noqa: SIM115
        self._writer = SummaryWriter(str(self.workdir / "tensorboard"))
        self._bar = tqdm(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, mininterval=1.0
        )

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        """Record ``values`` at ``step`` (JSONL line and TensorBoard ``prefix/name``)."""
        if not self.enabled:
            return
        record = {
            "step": step,
            "split": prefix,
            "time": time.time(),
            **{k: float(v) for k, v in values.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for key, value in values.items():
            self._writer.add_scalar(f"{prefix}/{key}", float(value), step)

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
        viz.save_png(viz.image_grid(rows, column_titles=["gray", "generated", "real"]), path)
        return path

    def close(self) -> None:
        """Flush and close everything."""
        if self.enabled:
            self._bar.close()
            self._jsonl.close()
            self._writer.close()
