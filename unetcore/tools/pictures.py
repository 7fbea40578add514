"""Small pictures for the docs: PNG writing (zlib, no imaging package needed) and a colour map."""
import struct
import zlib

import numpy as np


def write_png(path, image):
    """Write an 8-bit grey (H, W) or RGB (H, W, 3) array as a PNG file."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    colour = 2 if image.ndim == 3 else 0
    rows = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def read_png(data):
    """The array of a PNG that write_png wrote (its bytes): 8-bit, one IDAT, no row filters."""
    width, height, _, colour = struct.unpack(">IIBB", data[16:26])
    size = struct.unpack(">I", data[33:37])[0]
    rows = zlib.decompress(data[41:41 + size])
    channels = 3 if colour == 2 else 1
    pixels = np.frombuffer(rows, np.uint8).reshape(height, 1 + width * channels)[:, 1:]
    return pixels.reshape((height, width, 3) if channels == 3 else (height, width))


def to_grey(values, low=None, high=None):
    low = values.min() if low is None else low
    high = values.max() if high is None else high
    return (np.clip((values - low) / ((high - low) or 1), 0, 1) * 255).round().astype(np.uint8)


def heat(values):
    """Dark blue (low) through red to yellow (high), for weight maps."""
    t = to_grey(values).astype(float) / 255
    rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 * t - 1, 0, 1), np.clip(0.5 - t, 0, 1) * 1.5],
                   axis=-1)
    return (rgb * 255).round().astype(np.uint8)
