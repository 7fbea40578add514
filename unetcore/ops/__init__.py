"""Device code behind one function per op: a CPU twin (NumPy) and a GPU twin (a CUDA kernel
beside it in this folder, launched by unetcore.ops.cuda) side by side, and a chooser that asks the
array where it lives (backend.on_gpu), as Chainer's utils/conv.py does for im2col. Layers
call the chooser and never import unetcore.ops.cuda. im2col.py and winograd.py are the convolution's ops."""
