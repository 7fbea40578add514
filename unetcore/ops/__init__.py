"""Device code: the CUDA kernels (the .cu files in this folder), their loader and launchers
unetcore.ops.cuda, and the convolution's ops.

- im2col.py: im2col and col2im, a strided NumPy reference (any number of axes, either
  device) and its 2-d GPU twin side by side, with a chooser that asks the array where it
  lives (backend.on_gpu), as Chainer's utils/conv.py does. The convolution engines call it.
- winograd.py: Winograd's transform matrices F(m, r), computed exactly from their points.
- pooling.py and softmax_loss.py: only the GPU twins of MAX pooling and of the softmax loss.
  Their maths, the NumPy reference, is in the layer's own file (layers/pooling.py,
  layers/softmax_loss.py), which calls the twin on a GPU (for pooling, with a 2-d kernel).

Layers never import unetcore.ops.cuda: they call a chooser or a GPU twin here. The solver's
fused update (sgd_update.cu) is launched from solvers/sgd.py."""
