"""Training data: TIFF stacks, U-Net weight maps, elastic deformation, synthetic EM-like stacks."""
