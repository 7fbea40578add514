"""Segmentation with a trained net: deploy nets (deploy), overlap-tile over images of any size
(tiling), stacks and volumes (stacks), volumes larger than memory chunk by chunk (chunked),
and the receptive field of an output pixel (receptive)."""
