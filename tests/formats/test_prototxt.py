import math

import pytest
from hypothesis import given, strategies as st

from unetcore.errors import PrototxtError
from unetcore.formats.prototxt import Message, parse, parse_file, to_text


def test_nested_messages_with_and_without_colon():
    m = parse('layer { name: "a" convolution_param: { num_output: 3 } }\n'
              'layer: { name: "b" }')
    assert [l.name for l in m.layer] == ["a", "b"]
    assert m.layer[0].convolution_param.num_output == 3


def test_scalars_enums_bools_comments_separators():
    m = parse('''# a comment
        name: 'it\\'s' # trailing comment
        force_backward: true;
        layer { name: "p", type: "Pooling" pooling_param { pool: AVE kernel_size: 0x3 stride: 2 }
                loss_weight: 1e-4 loss_weight: .5 loss_weight: -3 loss_weight: inf
                loss_weight: -inf include { phase: TRAIN } }''')
    layer = m.layer[0]
    assert m.name == "it's" and m.force_backward is True
    assert layer.pooling_param.pool == "AVE" and layer.pooling_param.kernel_size == [3]
    assert layer.loss_weight[:3] == [1e-4, 0.5, -3.0]
    assert layer.loss_weight[3] == math.inf and layer.loss_weight[4] == -math.inf
    assert layer.include[0].phase == "TRAIN"


def test_repeated_field_as_list_and_defaults():
    m = parse('layer { convolution_param { kernel_size: [3, 2] } }')
    conv = m.layer[0].convolution_param
    assert conv.kernel_size == [3, 2]
    assert conv.group == 1 and conv.bias_term is True and conv.stride == []
    assert conv.weight_filler.type == "constant"


def test_string_escapes_and_concatenation():
    m = parse(r'name: "a\n\t\"b\\" "c" ' + "'\\101'")
    assert m.name == 'a\n\t"b\\cA'


def test_open_messages_of_unimplemented_caffe_layers_parse_and_print():
    text = 'layer { name: "bn" type: "BatchNorm" batch_norm_param { use_global_stats: true ' \
           'x { y: [1, 2] } } }'
    m = parse(text)
    assert parse(to_text(m)) == m


@pytest.mark.parametrize("text, line, col, words", [
    ('layer {\n  nam: "x"\n}', 2, 3, "unknown field 'nam' in LayerParameter; did you mean 'name'?"),
    ('layer {\n  name: "x"\n', 3, 1, "missing '}': the message opened at line 1, column 7"),
    ('layer { include { phase: TRAN } }', 1, 26, "one of TRAIN, TEST, found 'TRAN'; did you mean TRAIN?"),
    ('layer { convolution_param { num_output: 1.5 } }', 1, 41, "takes an integer, found '1.5'"),
    ('name: x', 1, 7, "takes a quoted string, found 'x'"),
    ('force_backward: maybe', 1, 17, "takes true or false"),
    ('name "x"', 1, 6, "expected ':' after field name 'name'"),
    ('name: "a" name: "b"', 1, 11, "field 'name' is set twice"),
    ('layer { name: "a" } }', 1, 21, "expected a field name in NetParameter, found '}'"),
    ('name: "a\\q"', 1, 7, "unknown escape"),
    ('layer { name: "a" @ }', 1, 19, "unexpected character '@'"),
    ('layer { loss_weight: 1e }', 1, 22, "takes a number"),
    ('layer { name: ["a"] }', 1, 15, "is not repeated and cannot take a list"),
    ('layer {\n  crop_param { offset: 0 offset: -1 } }', 2, 34,
     "field 'offset' takes an unsigned 32-bit integer (0 to 4294967295), found -1"),
    ('layer { crop_param { offset: 4294967296 } }', 1, 30, "unsigned 32-bit integer"),
])
def test_errors_are_located(text, line, col, words):
    with pytest.raises(PrototxtError) as info:
        parse(text, filename="net.prototxt")
    err = info.value
    assert (err.filename, err.line, err.col) == ("net.prototxt", line, col)
    assert str(err).startswith(f"net.prototxt:{line}:{col}: ")
    assert words in str(err)


def test_missing_file(tmp_path):
    with pytest.raises(PrototxtError, match="no such file"):
        parse_file(tmp_path / "nope.prototxt")


def test_undecodable_file(tmp_path):
    path = tmp_path / "bin.prototxt"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PrototxtError, match=r"not a text prototxt \(binary data at byte 0\)"):
        parse_file(path)


# --- property: parse(print(x)) == x over random messages
names = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=12)
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def layer_messages(draw):
    layer = Message("LayerParameter")
    layer.set("name", draw(names))
    for b in draw(st.lists(names, max_size=3)):
        layer.set("bottom", b)
    for w in draw(st.lists(floats, max_size=3)):
        layer.set("loss_weight", w)
    if draw(st.booleans()):
        conv = Message("ConvolutionParameter")
        conv.set("num_output", draw(st.integers(0, 2 ** 31 - 1)))
        conv.set("bias_term", draw(st.booleans()))
        for k in draw(st.lists(st.integers(-5, 9), max_size=2)):
            conv.set("kernel_size", k)
        filler = Message("FillerParameter").set("type", draw(st.sampled_from(["msra", "xavier"])))
        filler.set("std", draw(floats))
        conv.set("weight_filler", filler)
        layer.set("convolution_param", conv)
    if draw(st.booleans()):
        layer.set("include", Message("NetStateRule").set("phase", draw(st.sampled_from(["TRAIN", "TEST"]))))
    return layer


@given(st.lists(layer_messages(), max_size=3), names)
def test_print_then_parse_is_identity(layers, name):
    net = Message("NetParameter").set("name", name)
    for layer in layers:
        net.set("layer", layer)
    assert parse(to_text(net)) == net
