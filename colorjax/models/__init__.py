"""Generator and discriminator networks, their shared layers and the norm factory."""

from colorjax.models.norms import make_norm
from colorjax.models.patchgan import PatchDiscriminator, receptive_field
from colorjax.models.unet import UNetGenerator

__all__ = ["PatchDiscriminator", "UNetGenerator", "make_norm", "receptive_field"]
