"""The Fiji U-Net plugin's side: its model files (modeldef), its image preparation (images),
segmentation (predict) and fine-tuning (finetune) as the plugin does them, and the caffe_unet
and caffe commands that the unmodified plugin runs (backend)."""
