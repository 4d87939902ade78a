"""brainvq: discrete codes of brain MRI (VQ-VAE) and a PixelCNN prior over them."""

__version__ = "0.1.0"
