"""The two order-dependent algorithms behind the ISBI 2012 measures, as Fiji computes them.

Both come from Fiji's Trainable_Segmentation (package trainableSegmentation, read for this
module; no code is taken from it):

- the simple-point warp of the warping error (metrics/WarpingError.simplePointWarp2d) and the
  classification of the pixels it leaves (WarpingError.classifyMismatches2d);
- the watershed thinning of the leaderboard's V_Rand and V_Info (utils/WatershedTransform2D).

Each is a sequential loop in Fiji, and its result depends on the order of that loop. Here both
run on whole batches of images at once with NumPy, in an order that gives the very same result:
a pixel is decided once everything it depends on is decided, and is decided again only when
one of those pixels changes (a fixed point over the loop's order, which is a DAG).

Images are boolean, True = cell (4-connected), False = membrane (8-connected).
"""
import numpy as np
from scipy import ndimage

CROSS = ndimage.generate_binary_structure(2, 1)                  # 4-connectivity
SLICEWISE = np.stack([np.zeros((3, 3), bool), CROSS, np.zeros((3, 3), bool)])  # per image
# The 8 neighbours (dy, dx) clockwise from the top-left corner: two pixels next to each other
# in this ring are 4-adjacent, so the 4-connected groups of ring pixels are its runs.
RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
EDGES = (1, 3, 5, 7)                                              # ring positions 4-adjacent to x


def ring_runs(members):
    """The runs of True in a cyclic ring of booleans, as lists of positions."""
    if all(members):
        return [list(range(len(members)))]
    start = next(k for k, m in enumerate(members) if not m)      # a gap: runs cannot wrap it
    runs, run = [], []
    for step in range(1, len(members) + 1):
        k = (start + step) % len(members)
        if members[k]:
            run.append(k)
        elif run:
            runs.append(run)
            run = []
    return runs


def is_simple(code):
    """Whether flipping a pixel whose ring holds cells at the set bits of `code` keeps the
    topology (cells 4-connected, membrane 8-connected): exactly one group of cell neighbours
    touches the pixel along an edge, and some neighbour is membrane.

    Fiji tests this with Bertrand and Malandain's 3-d characterization, on a 3x3x3 patch
    whose middle plane is the pixel's neighbourhood and whose two other planes are membrane
    (WarpingError.simple2DBertrand, simple3d). Those two planes join every membrane
    neighbour, so only the cell condition is left, plus "not every neighbour is a cell"; the
    256 answers were checked against a transcription of Fiji's simple3d."""
    cells = [bool(code >> k & 1) for k in range(8)]
    touching = [run for run in ring_runs(cells) if set(run) & set(EDGES)]
    return len(touching) == 1 and not all(cells)


SIMPLE = np.array([is_simple(code) for code in range(256)])


class Frame:
    """Flat indexing into a batch of images padded with a 1-pixel frame, so that every pixel
    of an image has all 8 neighbours inside its own padded image."""

    def __init__(self, shape):
        self.count, self.height, self.width = shape
        self.padded = (self.count, self.height + 2, self.width + 2)
        step = self.width + 2
        self.ring = np.array([dy * step + dx for dy, dx in RING])
        # Fiji's 4-neighbour order (utils/Neighborhood2DC4): left, up, right, down
        self.cross = np.array([-1, -step, 1, step])

    def pad(self, images, value=0):
        return np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=value).ravel()

    def crop(self, flat):
        return flat.reshape(self.padded)[:, 1:-1, 1:-1]

    def column_major(self, flat_index):
        """Each pixel's position in Fiji's scans (x outer, y inner), within its image."""
        _, y, x = np.unravel_index(flat_index, self.padded)
        return x * (self.height + 2) + y


# ---- the simple-point warp (WarpingError.simplePointWarp2d) --------------------------------

def warp(truth, target, priority):
    """The truth warped towards the thresholded prediction `target` by simple-point flips, as
    Fiji does it: a 1-pixel membrane frame around each image; in each pass the pixels that
    still differ are visited in order of `priority` (|p - threshold| as float32), largest
    first, ties in Fiji's column-major scan (Collections.sort is stable); each one flips if it
    is simple at the moment of its visit; passes repeat until one flips nothing.
    Arrays are (images, height, width); the result is the warped truth."""
    frame = Frame(truth.shape)
    state = frame.pad(truth.astype(bool))
    goal = frame.pad(target.astype(bool))
    rank = frame.pad(-priority.astype(np.float32))
    pending = np.flatnonzero(state != goal)
    pending = pending[np.lexsort((frame.column_major(pending), rank[pending]))]
    position = np.full(state.size, -1, np.int32)       # a pixel's place in this pass's visits
    scratch = Scratch(state.size)
    todo = np.arange(pending.size)                     # the first pass decides every pixel
    while pending.size:
        position[pending] = np.arange(pending.size)
        flips = one_pass(state, pending, position, todo, frame, scratch)
        if not flips.any():
            break
        state[pending[flips]] ^= True
        # A pixel left alone sees the same neighbours at the start of the next pass as at its
        # visit, unless a neighbour visited after it flipped: only those need deciding again.
        before = earlier_neighbours(pending[flips], np.flatnonzero(flips), position,
                                    frame.ring, scratch)
        todo = (np.cumsum(~flips) - 1)[before[~flips[before]]]     # their places next pass
        position[pending] = -1
        pending = pending[~flips]
    return frame.crop(state)


class Scratch:
    """Reusable per-pixel arrays: `flipped` (a pass's flips so far) and `stamp` (for
    removing duplicates from a list of places without sorting it)."""

    def __init__(self, size):
        self.flipped = np.zeros(size, bool)
        self.stamp = np.zeros(size, np.int32)

    def distinct(self, places):
        """`places` without repeats (in no particular order)."""
        self.stamp[places] = np.arange(places.size)
        return places[self.stamp[places] == np.arange(places.size)]


def one_pass(state, pending, position, todo, frame, scratch):
    """Which of the `pending` pixels (in visiting order) one Fiji pass flips. A pixel sees
    its earlier-visited neighbours as they are after their own visit and every other
    neighbour as it was when the pass began. The pixels in `todo` are decided from the state
    at the start of the pass (the others are known to stay); then only the later neighbours
    of pixels whose decision changed are decided again, until nothing changes."""
    flips = np.zeros(pending.size, bool)
    flipped = scratch.flipped
    first = True
    while todo.size:
        pixels = pending[todo]
        code = np.zeros(todo.size, np.uint8)
        for k, offset in enumerate(frame.ring):
            neighbour = pixels + offset
            seen = state[neighbour]
            if not first:                                # nothing has flipped before that
                earlier = (position[neighbour] >= 0) & (position[neighbour] < todo)
                seen = seen ^ (flipped[neighbour] & earlier)
            code |= seen.astype(np.uint8) << k
        changed = todo[SIMPLE[code] != flips[todo]]
        flips[changed] = ~flips[changed]
        flipped[pending[changed]] = flips[changed]
        todo = later_neighbours(pending[changed], changed, position, frame.ring, scratch)
        first = False
    flipped[pending] = False
    return flips


def neighbour_places(pixels, places, position, offsets):
    """The places of the neighbours of `pixels` (-1: not visited in this pass), and whether
    each comes after the pixel itself."""
    around = position[pixels[:, None] + offsets[None, :]]
    return around, around > places[:, None]


def later_neighbours(pixels, places, position, offsets, scratch):
    """The places of the neighbours of `pixels` that are visited after them."""
    around, after = neighbour_places(pixels, places, position, offsets)
    return scratch.distinct(around[after])


def earlier_neighbours(pixels, places, position, offsets, scratch):
    """The places of the neighbours of `pixels` that are visited before them."""
    around, after = neighbour_places(pixels, places, position, offsets)
    return scratch.distinct(around[~after & (around >= 0)])


# ---- what the warp leaves (WarpingError.classifyMismatches2d) ------------------------------

def splits_and_mergers(warped, target):
    """The number of pixels that differ after the warp and that Fiji classifies as a split or
    a merger, in each image (radius -1: the split test looks at the whole image)."""
    return np.array([count_splits_and_mergers(w, t) for w, t in zip(warped, target)])


def count_splits_and_mergers(warped, target):
    """Fiji's rules, for one image, on the 4-connected objects of the warped truth and the
    labels found in each differing pixel's 8-neighbourhood (inside the image only):
    - neighbours all membrane, or all one object: an object or hole change, not counted;
    - two labels: a membrane pixel is a hole addition; a cell pixel is a split when taking it
      out of its object leaves its neighbours in that object apart, else a hole deletion;
    - no label (a 1-pixel image) or three and more: a merger if the pixel is membrane, a
      split if it is a cell."""
    objects, _ = ndimage.label(warped, CROSS)
    ys, xs = np.nonzero(warped != target)
    around = np.pad(objects, 1, constant_values=-1)
    labels = np.stack([around[ys + 1 + dy, xs + 1 + dx] for dy, dx in RING], axis=1)
    centre = objects[ys, xs]
    distinct = count_distinct(labels)
    many = (distinct == 0) | (distinct >= 3)
    two = (distinct == 2) & (centre != 0)
    own = labels[two] == centre[two][:, None]
    return (np.count_nonzero(many) +
            np.count_nonzero(separated(objects, ys[two], xs[two], own)))


def count_distinct(labels):
    """The number of different labels in each row, not counting -1 (outside the image)."""
    ordered = np.sort(labels, axis=1)
    first = np.ones_like(ordered, bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return np.count_nonzero(first & (ordered >= 0), axis=1)


def separated(objects, ys, xs, own):
    """Whether taking each cell pixel (y, x) out of its object leaves its ring neighbours of
    that object (`own`, one row per pixel) in two or more pieces, as Fiji finds by labelling
    the whole image again for each pixel.

    Neighbours in one run of the ring stay joined through the ring. The other pixels (the
    candidates) are answered together: the objects without any candidate fall into pieces;
    in the graph of pieces and candidates (joined when 4-adjacent), taking one candidate out
    separates exactly what it separates in the image, and one depth-first search tells it
    for all of them (Hopcroft and Tarjan's cut vertices)."""
    runs = np.count_nonzero(own & ~np.roll(own, 1, axis=1), axis=1)
    result = np.zeros(len(ys), bool)
    check = np.flatnonzero(runs >= 2)
    if not check.size:
        return result
    candidate = np.zeros(objects.shape, bool)
    candidate[ys[check], xs[check]] = True
    pieces, count = ndimage.label((objects > 0) & ~candidate, CROSS)
    node = np.pad(pieces, 1)                             # node ids: pieces 1..count, then
    node[ys[check] + 1, xs[check] + 1] = count + 1 + np.arange(check.size)   # candidates
    graph = CutVertices(candidate_edges(node, ys[check], xs[check], count))
    for k, i in enumerate(check):
        ring = {node[ys[i] + 1 + dy, xs[i] + 1 + dx] for j, (dy, dx) in enumerate(RING)
                if own[i, j]}
        result[i] = len({graph.side(count + 1 + k, u) for u in ring}) >= 2
    return result


def candidate_edges(node, ys, xs, count):
    """Adjacency lists of the graph of pieces and candidates: each candidate with the nodes
    of its 4 neighbours (pieces or other candidates)."""
    adjacency = {}
    for k, (y, x) in enumerate(zip(ys + 1, xs + 1)):
        here = count + 1 + k
        for dy, dx in ((0, -1), (-1, 0), (0, 1), (1, 0)):
            there = node[y + dy, x + dx]
            if there:
                adjacency.setdefault(here, set()).add(there)
                adjacency.setdefault(there, set()).add(here)
    return adjacency


class CutVertices:
    """One depth-first search of a graph (adjacency sets), remembering for every node its
    discovery time, the last discovery time in its subtree, its low point and its children,
    so that the component of G - p holding any node u can be named for any p."""

    def __init__(self, adjacency):
        self.adjacency, self.parent = adjacency, {}
        self.found, self.last, self.low, self.children = {}, {}, {}, {}
        for root in adjacency:
            if root not in self.found:
                self.search(root)

    def search(self, root):
        self.parent[root] = None
        self.visit(root)
        stack = [(root, iter(self.adjacency[root]))]
        while stack:
            node, neighbours = stack[-1]
            for other in neighbours:
                if other not in self.found:
                    self.parent[other] = node
                    self.children[node].append(other)
                    self.visit(other)
                    stack.append((other, iter(self.adjacency[other])))
                    break
                self.low[node] = min(self.low[node], self.found[other])
            else:
                stack.pop()
                self.last[node] = len(self.found) - 1
                if self.parent[node] is not None:
                    up = self.parent[node]
                    self.low[up] = min(self.low[up], self.low[node])

    def visit(self, node):
        self.found[node] = self.low[node] = len(self.found)
        self.children[node] = []

    def side(self, p, u):
        """The component of G - p that holds u: a child subtree of p that no edge joins to
        p's ancestors, or (None) the rest of p's component."""
        if not self.found[p] < self.found[u] <= self.last[p]:
            return None
        child = max((c for c in self.children[p] if self.found[c] <= self.found[u]),
                    key=self.found.get)
        if self.parent[p] is None or self.low[child] >= self.found[p]:
            return child
        return None


# ---- the watershed thinning (utils/WatershedTransform2D, on the binary proposal) ------------

WATERSHED, UNSEEN, OUTSIDE = 0, -1, -2


def thin_membranes(cells):
    """The segments of each binary proposal after Fiji's border thinning: the classic
    watershed (Vincent and Soille, 1991) of the proposal with cells at 0 and membrane at 255,
    4-connected. The cells are the basins; the membrane floods from them breadth first, and
    a membrane pixel where two basins meet becomes a watershed line (label 0).

    Fiji's flooding is a FIFO: the membrane pixels next to a cell, in column-major order,
    then each popped pixel appends its unseen neighbours (left, up, right, down). A popped
    pixel takes its label from its neighbours as they are then: cells, pixels popped before
    it, and the ones still queued count as nothing. Each breadth-first layer is decided here
    in one step, again and again until its labels no longer change (a pixel depends on the
    pixels of its own layer popped before it)."""
    frame = Frame(cells.shape)
    cells = cells.astype(bool)
    basins, count = ndimage.label(cells, SLICEWISE)
    labels = frame.pad(np.where(cells, basins, UNSEEN), OUTSIDE).astype(np.int32)
    layer = first_layer(labels, frame)
    reached = np.zeros(labels.size, bool)
    reached[layer] = True
    position = np.full(labels.size, -1, np.int32)        # a pixel's place in its layer
    scratch = Scratch(labels.size)
    while layer.size:
        following = next_layer(layer, labels, reached, frame)
        label_layer(layer, labels, position, frame, scratch)
        layer = following
    unreached = frame.crop(labels) == UNSEEN              # membrane of images without cells
    extra, _ = ndimage.label(unreached, SLICEWISE)
    result = frame.crop(labels).copy()
    result[unreached] = extra[unreached] + count
    return result


def first_layer(labels, frame):
    """Membrane pixels with a cell among their 4 neighbours, in Fiji's column-major order."""
    membrane = np.flatnonzero(labels == UNSEEN)
    near_cell = np.zeros(membrane.size, bool)
    for offset in frame.cross:
        near_cell |= labels[membrane + offset] > 0
    layer = membrane[near_cell]
    image = layer // (labels.size // frame.count)
    return layer[np.lexsort((frame.column_major(layer), image))]


def next_layer(layer, labels, reached, frame):
    """The unseen membrane neighbours of a layer, in the order its popped pixels append
    them: by the popping pixel, then by Fiji's neighbour order."""
    neighbours = (layer[:, None] + frame.cross[None, :]).ravel()    # in (pixel, slot) order
    unseen = (labels[neighbours] == UNSEEN) & ~reached[neighbours]
    candidates = neighbours[unseen]
    found, first = np.unique(candidates, return_index=True)
    following = found[np.argsort(first)]
    reached[following] = True
    return following


def label_layer(layer, labels, position, frame, scratch):
    """Fiji's labelling of the popped pixels of one layer (WatershedTransform2D.apply). Its
    rules, followed neighbour by neighbour (take a basin's label while the pixel has none or
    is a line met through a line; a second basin's label makes it a line; a line makes a
    pixel without label a line), come to this: a pixel takes the basin label that its
    labelled neighbours show when they show exactly one, and is a line (0) otherwise. Those
    neighbours are the cells, the earlier layers and the pixels of its own layer popped
    before it; the rest are still queued and count as nothing."""
    position[layer] = np.arange(layer.size)
    todo = np.arange(layer.size)
    none = np.iinfo(labels.dtype).max
    while todo.size:
        pixels = layer[todo]
        lowest = np.full(todo.size, none, labels.dtype)
        highest = np.zeros(todo.size, labels.dtype)
        for offset in frame.cross:
            neighbour = pixels + offset
            seen = np.where(position[neighbour] > todo, UNSEEN, labels[neighbour])
            lowest = np.minimum(lowest, np.where(seen > 0, seen, none))
            highest = np.maximum(highest, seen)
        state = np.where(lowest == highest, highest, WATERSHED)
        differs = state != labels[pixels]
        changed = todo[differs]
        labels[layer[changed]] = state[differs]
        todo = later_neighbours(layer[changed], changed, position, frame.cross, scratch)
    position[layer] = -1
