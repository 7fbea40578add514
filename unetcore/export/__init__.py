"""A trained net for other tools: ONNX (onnx) and BioImage Model Zoo packages (bioimageio)."""
