"""Blob: an N-d array of data with a same-shaped array of gradients (diff), as in Caffe."""
import numpy as np

from unetcore.arena import Allocator


class Blob:
    """Data and diff of one named tensor.

    Arrays are allocated on first use: a shape-only pass (``Net.reshape``, the valid-size
    search) costs nothing, and a net that only runs forward never pays for gradients. They
    come from the blob's allocator (Caffe's SyncedMemory): fresh zeroed arrays, or a memory
    plan's arenas (unetcore.arena).
    """

    def __init__(self, shape=(), dtype=np.float32, xp=np):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.allocator = Allocator(xp, dtype)
        self._shape = self._diff = self._data = None
        self.reshape(shape)

    def reshape(self, *shape):
        """Give the blob a new shape, as reshape((1, 1, 572, 572)) or as pycaffe's
        reshape(1, 1, 572, 572); its contents are zeroed when the shape changes."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"negative blob shape {shape}")
        if shape != self._shape:
            self.release_diff()
            self.release_data()
            self._shape = shape
            self._source = None

    def share_data(self, other):
        """Make this blob's data the very array of `other` (Caffe's ShareData)."""
        if self._diff is not None and self._diff.shape != other.shape:
            self.release_diff()
        self._shape = other.shape
        self._source, self._data = other, None

    @property
    def owner(self):
        """The blob that owns this blob's data array (itself, unless it shares another's)."""
        return self if self._source is None else self._source.owner

    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return int(np.prod(self._shape, dtype=np.int64))

    def data_to_overwrite(self):
        """The data array, for a writer that sets every element of it: an array from a memory
        plan's arena comes as it is, not zeroed first."""
        if self._source is not None:
            return self._source.data_to_overwrite()
        if self._data is None:
            self._data = self.allocator.take(self._shape, "data", zeroed=False)
        return self._data

    @property
    def data(self):
        if self._source is not None:
            return self._source.data
        if self._data is None:
            self._data = self.allocator.take(self._shape, "data")
        return self._data

    @data.setter
    def data(self, value):
        self.data[...] = value

    @property
    def diff(self):
        if self._diff is None:
            self._diff = self.allocator.take(self._shape, "diff")
        return self._diff

    @diff.setter
    def diff(self, value):
        self.diff[...] = value

    def release_diff(self):
        """Free the gradient array (it is re-made, zeroed, on next use)."""
        if self._diff is not None:
            self.allocator.give(self._diff, "diff")
        self._diff = None

    def release_data(self):
        """Free the data array (it is re-made, zeroed, on next use)."""
        if self._data is not None:
            self.allocator.give(self._data, "data")
        self._data = None

    @property
    def has_diff(self):
        return self._diff is not None

    # pycaffe's 4-d accessors
    num = property(lambda self: self._shape[0])
    channels = property(lambda self: self._shape[1])
    height = property(lambda self: self._shape[2])
    width = property(lambda self: self._shape[3])

    def __repr__(self):
        return f"Blob(shape={self._shape}, dtype={self.dtype})"
