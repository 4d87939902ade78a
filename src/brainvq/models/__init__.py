"""The models as plain nn.Modules built from typed configs: the vector quantizer (quantizer),
the VQ-VAE (vqvae), the gated PixelCNN prior (pixelcnn) with what it conditions on (condition_map:
a code's position and the slice's level; neighbour_map: the code map of the slice below), the
patch discriminator of adversarial training (discriminator), and the small classifiers brainvq
measures with: the level classifier and the slice pair classifier (level_classifier,
pair_classifier; their shared body and checks: conv_classifier). eval_mode lends a model in eval
mode and gives it back as it was. Nothing here trains, reads files or touches a run directory."""
