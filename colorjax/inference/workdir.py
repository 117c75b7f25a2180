"""A Colorizer from a training run's checkpoints (latest, best or a step; EMA or raw)."""

from __future__ import annotations

from pathlib import Path

from colorjax.config import load_json
from colorjax.gan import ema
from colorjax.inference.colorizer import Colorizer, default_render_size


def load_workdir(
    workdir: str | Path, step: int | str | None = None, weights: str | None = None
) -> Colorizer:
    """The generator of a training run (``step``: None or "latest", "best", or a step number;
    ``weights``: "ema" or "raw", by default the EMA weights when the run keeps some).

    "latest" and "best" pass over damaged checkpoints with a warning (the files stay where
    they are); a damaged step asked for by number is a DamagedCheckpointError.
    """
    # orbax: only when a workdir is read
    from colorjax.training.checkpoint import Checkpoints, restore_chosen

    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} is not a training workdir (no config.json)")
    config = load_json(workdir / "config.json")
    checkpoints = Checkpoints(workdir / "checkpoints", config.ckpt)
    try:
        chosen, state = restore_chosen(checkpoints, step, workdir)
    finally:
        checkpoints.close()
    averaged = state.get("ema", {})
    used = ema.resolve_weights(bool(averaged), weights, f"{workdir} (step {chosen})")
    params, norm_state = ema.generator_weights(
        averaged, state["g_params"], state.get("g_state", {}), used
    )
    return Colorizer(
        config.model,
        params,
        norm_state,
        default_render_size(config.model, config.data.image_size),
        origin={"source_workdir": str(workdir), "source_step": chosen, "weights": used},
    )
