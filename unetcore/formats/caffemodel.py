"""Binary .caffemodel files: Caffe's NetParameter in protobuf's wire format, read and written
for the part that holds weights, without the protobuf library.

The wire format is a sequence of fields, each a key, varint(field_number << 3 | wire_type),
then the value: a varint (type 0), 8 bytes (type 1), a varint length and that many bytes
(type 2: strings, messages, packed repeated numbers), or 4 bytes (type 5). Little-endian
throughout. The fields used here, with their numbers from Caffe's caffe.proto:

    NetParameter      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter, 2015)
    LayerParameter    name = 1, type = 2, blobs = 7
    V1LayerParameter  name = 4, blobs = 6
    BlobProto         shape = 7 (BlobShape: dim = 1), num, channels, height, width = 1..4,
                      data = 5 (float), double_data = 8 (double); diff = 6, double_diff = 9
Every other field is skipped, as a protobuf reader skips unknown fields.
"""
import numpy as np

from unetcore.errors import DataError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
LAYER_FIELDS = {100: (1, 7), 2: (4, 6)}     # NetParameter field: (name field, blobs field)


class _Reader:
    """Fields of one message, from byte `start` to `end` of the file's bytes."""

    def __init__(self, data, path, start=0, end=None):
        self.data, self.path = data, path
        self.pos, self.end = start, len(data) if end is None else end

    def fail(self, message, at):
        raise DataError(f"{self.path}: byte {at}: {message}; not a readable .caffemodel "
                        "(a binary Caffe NetParameter)")

    def varint(self):
        value, shift, start = 0, 0, self.pos
        while True:
            if self.pos >= self.end:
                self.fail("the file ends inside a number (truncated?)", start)
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                self.fail("a number longer than 10 bytes", start)

    def take(self, size, at):
        if self.pos + size > self.end:
            self.fail(f"a field of {size} bytes runs past the end of its message (truncated?)",
                      at)
        self.pos += size
        return self.pos - size

    def fields(self):
        """(number, wire type, value, offset): value is an int, or (start, end) for type 2."""
        while self.pos < self.end:
            offset = self.pos
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == VARINT:
                yield number, wire, self.varint(), offset
            elif wire == FIXED64:
                yield number, wire, self.take(8, offset), offset
            elif wire == FIXED32:
                yield number, wire, self.take(4, offset), offset
            elif wire == LENGTH:
                size = self.varint()
                start = self.take(size, offset)
                yield number, wire, (start, start + size), offset
            else:
                self.fail(f"field {number} has wire type {wire}, which Caffe's messages never "
                          "use", offset)

    def sub(self, span):
        return _Reader(self.data, self.path, *span)


def read_caffemodel(path):
    """[(layer name, [weight arrays], byte offset of the layer)] of a binary .caffemodel."""
    with open(path, "rb") as f:
        data = f.read()
    if looks_like_text(data):
        raise DataError(f"{path}: is a text file, not weights: weights are a binary "
                        ".caffemodel or an HDF5 .caffemodel.h5 (a prototxt is given as --model)")
    layers = []
    for number, wire, value, offset in _Reader(data, path).fields():
        if number in LAYER_FIELDS and wire == LENGTH:
            layers.append(_read_layer(_Reader(data, path, *value), LAYER_FIELDS[number],
                                      offset))
    return layers


def _read_layer(reader, numbers, offset):
    name_field, blobs_field = numbers
    name, blobs = None, []
    for number, wire, value, at in reader.fields():
        if number == name_field and wire == LENGTH:
            name = bytes(reader.data[value[0]:value[1]]).decode("utf-8", "replace")
        elif number == blobs_field and wire == LENGTH:
            blobs.append(_read_blob(reader.sub(value), at))
    if name is None:
        reader.fail("a layer without a name", offset)
    return name, blobs, offset


def _read_blob(reader, offset):
    """One BlobProto's values in its shape (float32 data, or float64 double_data)."""
    shape, legacy, chunks = None, {}, {5: [], 8: []}
    for number, wire, value, at in reader.fields():
        if number == 7 and wire == LENGTH:
            shape = [v for n, _, v, _ in _varints(reader.sub(value)) if n == 1]
        elif number in (1, 2, 3, 4) and wire == VARINT:
            legacy[number] = value
        elif number in chunks:
            chunks[number].append(_values(reader, number, wire, value, at))
    data = np.concatenate(chunks[8] or chunks[5] or [np.zeros(0, np.float32)])
    if shape is None:
        shape = [legacy.get(k, 1) for k in (1, 2, 3, 4)] if legacy else [data.size]
    if int(np.prod(shape, dtype=np.int64)) != data.size:
        reader.fail(f"a blob of shape {tuple(shape)} holds {data.size} values", offset)
    return data.reshape(shape)


def _values(reader, number, wire, value, at):
    """The numbers of a data (float) or double_data (double) field, packed or one by one."""
    dtype, size, single = ("<f4", 4, FIXED32) if number == 5 else ("<f8", 8, FIXED64)
    if wire == LENGTH:
        start, end = value
        if (end - start) % size:
            reader.fail(f"packed {'float' if size == 4 else 'double'} data of {end - start} "
                        "bytes", at)
        return np.frombuffer(reader.data, dtype, (end - start) // size, start)
    if wire != single:
        reader.fail(f"field {number} has wire type {wire}", at)
    return np.frombuffer(reader.data, dtype, 1, value)


def _varints(reader):
    """Varint fields of a message, packed (type 2) ones unpacked: (number, type, value, at)."""
    for number, wire, value, at in reader.fields():
        if wire == LENGTH:
            inner = reader.sub(value)
            while inner.pos < inner.end:
                yield number, VARINT, inner.varint(), at
        else:
            yield number, wire, value, at


# ---------------------------------------------------------------- writing
def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(number, wire):
    return _varint(number << 3 | wire)


def _length(number, payload):
    return _key(number, LENGTH) + _varint(len(payload)) + payload


def encode_blob(array, packed=True, legacy_shape=False):
    """A BlobProto: the shape, then float32 `data` or, for float64, `double_data`."""
    array = np.asarray(array)
    if legacy_shape:
        dims = (1,) * (4 - array.ndim) + array.shape
        out = b"".join(_key(n, VARINT) + _varint(d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        out = _length(7, _length(1, b"".join(_varint(d) for d in array.shape)))
    number, dtype, wire = (8, "<f8", FIXED64) if array.dtype == np.float64 else (5, "<f4", FIXED32)
    values = array.astype(dtype).ravel()
    if packed:
        return out + _length(number, values.tobytes())
    return out + b"".join(_key(number, wire) + v.tobytes() for v in values)


def encode_net(layers, name="", packed=True, v1=False):
    """A NetParameter holding `layers`, [(name, type, [arrays])], as V2 `layer` entries or as
    the 2015 release's V1 `layers` (with legacy 4-d blob shapes)."""
    out = _length(1, name.encode()) if name else b""
    for layer_name, kind, arrays in layers:
        if v1:
            body = _length(4, layer_name.encode()) + b"".join(
                _length(6, encode_blob(a, packed, legacy_shape=True)) for a in arrays)
            out += _length(2, body)
        else:
            body = _length(1, layer_name.encode()) + (_length(2, kind.encode()) if kind else b"") + b"".join(
                _length(7, encode_blob(a, packed)) for a in arrays)
            out += _length(100, body)
    return out


def write_caffemodel(path, layers, name="", packed=True, v1=False):
    with open(path, "wb") as f:
        f.write(encode_net(layers, name, packed, v1))


def looks_like_text(data):
    """Whether a file's first KiB is printable text (a protobuf's tags and lengths are not)."""
    head = data[:1024]
    return bool(head) and all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head)


def is_hdf5(path):
    """Whether a file starts with HDF5's signature (else it is taken as a binary caffemodel)."""
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"



# ---------------------------------------------------------------- solver state
# SolverState: iter = 1, learned_net = 2, history = 3 (BlobProto), current_step = 4.
# unetcore adds field 1000, its random generators' states as JSON, so that a resumed run is
# bit-identical; protobuf readers, Caffe's among them, skip a field they do not know.
RNG_STATES = 1000


def encode_solverstate(iteration, learned_net, history, current_step, rng_states=""):
    out = _key(1, VARINT) + _varint(iteration) + _length(2, learned_net.encode())
    out += b"".join(_length(3, encode_blob(h)) for h in history)
    out += _key(4, VARINT) + _varint(current_step)
    return out + (_length(RNG_STATES, rng_states.encode()) if rng_states else b"")


def read_solverstate(path):
    """{iter, learned_net, history: [arrays], current_step, rng_states} of a binary
    .solverstate."""
    with open(path, "rb") as f:
        data = f.read()
    reader = _Reader(data, path)
    state = {"iter": 0, "learned_net": "", "history": [], "current_step": 0, "rng_states": ""}
    for number, wire, value, at in reader.fields():
        if number in (1, 4) and wire == VARINT:
            state["iter" if number == 1 else "current_step"] = value
        elif number in (2, RNG_STATES) and wire == LENGTH:
            text = bytes(data[value[0]:value[1]]).decode("utf-8", "replace")
            state["learned_net" if number == 2 else "rng_states"] = text
        elif number == 3 and wire == LENGTH:
            state["history"].append(_read_blob(reader.sub(value), at))
    return state
