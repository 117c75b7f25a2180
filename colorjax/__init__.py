"""colorjax: automatic colorization of grayscale photographs with a conditional GAN."""

__version__ = "0.1.0"
