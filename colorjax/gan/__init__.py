"""The GAN: its train state (``state``), what a step closes over (``build``), the jitted step
(``step``), adversarial losses, optimizers, and the remedies of a GAN in trouble (``ema``,
``ada``, ``augment``, ``regularizers`` (R1), ``d_skip``), each a state or step variant."""
