"""Writers of the U-Net prototxts in prototxt/: the 2015 net and its variants (unet) and the
3-d nets (unet3d). `python -m unetcore.models.unet prototxt` rewrites them."""
