"""The gradient arena: a plan that never overlaps live gradients, and training that gives the
same numbers with it as without it."""
import numpy as np

from cases import small_unet_solver, weights_of
from unetcore.arena import Allocator, Arena
from unetcore.blob import Blob



def run_sequence(arena, events):
    """events: ("take", name, size) / ("give", name); returns {name: view} of the takes."""
    views, alive, overlaps = {}, {}, []
    for event in events:
        if event[0] == "take":
            view = arena.take((event[2],))
            for other in alive.values():
                overlaps.append(np.shares_memory(view, other))
            views[event[1]] = alive[event[1]] = view
        else:
            arena.give(alive.pop(event[1]))
    arena.end_pass()
    return views, overlaps


EVENTS = [("take", "a", 100), ("take", "b", 40), ("give", "a"), ("take", "c", 60),
          ("take", "d", 30), ("give", "b"), ("give", "c"), ("take", "e", 100), ("give", "d"),
          ("give", "e")]


def test_plan_never_overlaps_live_gradients_and_reuses_memory():
    arena = Arena(np, np.float32)
    run_sequence(arena, EVENTS)                        # records, then plans
    assert arena.plan is not None
    views, overlaps = run_sequence(arena, EVENTS)      # served from the arena
    assert not any(overlaps)
    assert all(np.shares_memory(v, arena.arena) for v in views.values())
    # most alive at once: b + c + d = 130 or d + e = 130, or a + b = 140; the sum is 330
    assert 140 <= arena.arena.size <= 200
    assert all((v == 0).all() for v in views.values())


def test_a_changed_sequence_is_planned_again():
    arena = Arena(np, np.float32)
    run_sequence(arena, EVENTS)
    changed = [("take", "a", 120)] + EVENTS[1:]
    views, overlaps = run_sequence(arena, changed)
    assert not any(overlaps) and views["a"].size == 120
    assert arena.plan[0][0] == 120


def test_blob_diffs_come_from_the_arena_and_go_back():
    arena = Arena(np, np.float64)
    blob = Blob((2, 3), np.float64)
    blob.allocator = Allocator(np, np.float64, diff=arena)
    blob.diff[...] = 5
    blob.release_diff()
    assert not blob.has_diff and (blob.diff == 0).all()


def test_training_with_the_arena_gives_the_same_weights(tmp_path):
    planned, plain = small_unet_solver(tmp_path), small_unet_solver(tmp_path)
    plain.net.release_diffs = False
    planned.step(6)
    plain.step(6)
    assert planned.net.memory.diff_arena.plan is not None
    for a, b in zip(weights_of(planned), weights_of(plain)):
        assert np.array_equal(a, b)


def test_forward_only_nets_free_activations_and_give_the_same_outputs():
    import pytest

    from unetcore.errors import NetError
    from unetcore.gradcheck import randomize_params
    from unetcore.net import Net
    image = np.random.default_rng(2).random((1, 1, 60, 60))
    outputs = []
    for release in (False, True):
        net = Net("prototxt/unet-small-deploy.prototxt", "TEST")
        randomize_params(net, np.random.default_rng(0))
        net.release_activations = release
        for _ in range(3):                               # record, plan, then serve
            outputs.append(net.forward(data=image)["score"].copy())
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])
    total = sum(b.count for name, b in net.blobs.items() if b._source is None) * 4
    assert net.memory.data_arena.nbytes < 0.6 * total
    np.testing.assert_array_equal(net.blobs["data"].data, image.astype(np.float32))  # kept
    with pytest.raises(NetError, match="frees its activations during forward"):
        net.backward()


def test_tops_a_layer_overwrites_come_unzeroed_and_every_element_is_written():
    """The layers that say they set every element of their tops (overwrites_tops) get them
    from the arena as they are: with the arena full of NaN before each pass, the U-Net's
    outputs (batch 2, Winograd and flat layers, the cropping concat) are those of a net that
    frees nothing; and the arena still zeroes the tops of the other layers."""
    from unetcore.gradcheck import randomize_params
    from unetcore.models.unet import deploy_text
    from unetcore.formats.prototxt import parse
    from unetcore.net import Net
    images = np.random.default_rng(3).random((2, 1, 132, 132)).astype(np.float32)
    outputs = []
    for release in (False, True):
        net = Net(parse(deploy_text(depth=3, channels=32, size=132), filename="unet.prototxt"),
                  "TEST")
        net.blobs["data"].reshape(images.shape)
        net.reshape()
        randomize_params(net, np.random.default_rng(4))
        net.release_activations = release
        for _ in range(3):                                # record, plan, then serve
            if release and net.memory.data_arena.arena is not None:
                net.memory.data_arena.arena[...] = np.nan
            outputs.append(net.forward(data=images)[net.outputs[0]].copy())
    assert {layer.engine for layer in net.layers} >= {"flat", "winograd", "blocks", "tiled"}
    assert {layer.type for layer in net.layers if layer.overwrites_tops} >= {
        "Convolution", "Deconvolution", "Pooling", "Concat"}
    assert not np.isnan(outputs[0]).any()
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])
    arena = Arena(np, np.float32)
    run_sequence(arena, EVENTS)
    arena.arena[...] = np.nan
    views, _ = run_sequence(arena, EVENTS)
    assert all((v == 0).all() for v in views.values())
