"""Caffe's file formats: prototxt text (prototxt, its field schema, the V1 -> V2 upgrade) and
weights (binary .caffemodel and .solverstate in caffemodel, HDF5 and both in weights)."""
