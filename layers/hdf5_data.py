"""HDF5Data (Caffe's HDF5DataLayer): batches from HDF5 files listed in a text file.

Each top reads the dataset of its own name (data, label, weights, ...) from the current
file, batch_size rows at a time along the first axis, moving to the next file at the end;
shuffle permutes the files and the rows of each file. This is how the original U-Net
release fed its training tiles.
"""
from pathlib import Path

import numpy as np

from unetcore.errors import DataError
from unetcore.layer import Layer, register
from unetcore.formats.weights import open_h5


@register
class HDF5DataLayer(Layer):
    type = "HDF5Data"
    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom, top):
        p = self.param.hdf5_data_param
        self.batch, self.shuffle = p.batch_size, p.shuffle
        self.files = self._list_files(p.source)
        self.names = list(self.param.top)
        self.file_order = self._order(len(self.files))
        self.file_index = 0
        self._load(self.file_order[0])

    def _list_files(self, source):
        if not source:
            raise self.error("hdf5_data_param needs source: a text file listing .h5 files")
        path = Path(source)
        if not path.exists():
            raise DataError(f"layer '{self.name}': source list {path} does not exist")
        files = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not files:
            raise DataError(f"layer '{self.name}': source list {path} names no HDF5 files")
        return [f if Path(f).is_absolute() or Path(f).exists() else str(path.parent / f)
                for f in files]

    def _order(self, n):
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def _load(self, k):
        filename = self.files[k]
        with open_h5(filename, "HDF5 data") as f:
            missing = [n for n in self.names if n not in f]
            if missing:
                raise DataError(f"{filename}: has no dataset '{missing[0]}' for top "
                                f"'{missing[0]}' of layer '{self.name}'; it has: "
                                f"{', '.join(f.keys())}")
            self.current = [np.asarray(f[n], dtype=self.dtype) for n in self.names]
        # With one item per batch, files may differ in size (caffe_unet's HDF5Data, fed one
        # file per image by the Fiji plugin): the tops take each file's shape in reshape.
        if self.batch > 1 and hasattr(self, "shapes") and \
                [a.shape[1:] for a in self.current] != self.shapes:
            raise DataError(f"{filename}: its datasets have item shapes "
                            f"{[a.shape[1:] for a in self.current]}, the first file's "
                            f"{self.shapes}; all files of layer '{self.name}' must agree")
        self.shapes = [a.shape[1:] for a in self.current]
        rows = {a.shape[0] for a in self.current}
        if len(rows) != 1:
            raise DataError(f"{filename}: datasets {', '.join(self.names)} differ in their "
                            "first (batch) dimension")
        self.rows = self._order(rows.pop())
        self.row = 0

    def reshape(self, bottom, top):
        if self.batch == 1 and self.row == len(self.rows):
            self._next_file()
        for t, array in zip(top, self.current):
            t.reshape((self.batch,) + array.shape[1:])

    def forward(self, bottom, top):
        for n in range(self.batch):
            if self.row == len(self.rows):
                self._next_file()
            for t, array in zip(top, self.current):
                t.data[n] = self.xp.asarray(array[self.rows[self.row]])
            self.row += 1

    def _next_file(self):
        self.file_index += 1
        if self.file_index == len(self.files):
            self.file_index = 0
            self.file_order = self._order(len(self.files))
        self._load(self.file_order[self.file_index])
