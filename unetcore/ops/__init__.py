"""Device code behind one function per op: a CPU twin (NumPy) and a GPU twin (a CUDA kernel
of unetcore/kernels, launched by unetcore.gpu) side by side, and a chooser that asks the
array where it lives (backend.on_gpu), as Chainer's utils/conv.py does for im2col. Layers
call the chooser and never import unetcore.gpu. unetcore/im2col.py has the same shape."""
