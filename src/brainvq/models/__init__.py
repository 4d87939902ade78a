"""The models as plain nn.Modules built from typed configs: the vector quantizer, the VQ-VAE,
the gated PixelCNN prior (with its ConditionMap), the patch discriminator and the level
classifier. Nothing here trains, reads files or touches a run directory."""
